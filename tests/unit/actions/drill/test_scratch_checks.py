"""The drill's checks that run on a scratch VM (scratch_checks.py), called in-process on a
folder, and the command that ships the module: its text with ``python3 -c``, all quoted."""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.actions.drill import scratch_checks
from orchestrator.actions.drill.checks import SCRATCH_CHECKS, scratch_command

HELLO_SHA256 = hashlib.sha256(b"hello").hexdigest()


def restored(tmp_path: Path) -> Path:
    root = tmp_path / "srv" / "qlvb"
    (root / "d").mkdir(parents=True)
    (root / "d" / "app.db").write_bytes(b"hello")
    (root / "empty").write_bytes(b"")
    (root / "link").symlink_to("/etc/passwd")  # counted as itself, never followed
    (root / "dirlink").symlink_to(tmp_path)  # a link to a folder: not walked into
    return root


def test_the_restored_tree_is_counted_without_following_links(tmp_path: Path) -> None:
    root = restored(tmp_path)
    found = scratch_checks.tree([str(root), str(tmp_path / "gone")], [])
    assert found["counts"] == {"files": 2, "dirs": 2, "others": 2, "total_size": 5}
    assert found["missing"] == [str(tmp_path / "gone")]
    single = scratch_checks.tree([str(root / "d" / "app.db")], [])  # a path that is a file
    assert single["counts"] == {"files": 1, "dirs": 0, "others": 0, "total_size": 5}


def test_sampled_files_are_hashed_as_restored_and_an_unreadable_one_is_none(
        tmp_path: Path) -> None:
    root = restored(tmp_path)
    found = scratch_checks.tree([str(root)], [str(root / "d" / "app.db"), str(root / "nope")])
    assert found["hashes"] == {str(root / "d" / "app.db"): HELLO_SHA256,
                               str(root / "nope"): None}


# a stand-in for ``restic restore``: writes each --include under --target, except one it
# "cannot read", and fails then with restic's last line
FAKE_RESTORE = """
import os, sys
args = sys.argv[1:]
target = args[args.index("--target") + 1]
wanted = [args[i + 1] for i, a in enumerate(args) if a == "--include"]
for path in wanted:
    if path.endswith("broken"):
        print("ignoring error for " + path + ": pack 1234 not found")
        continue
    os.makedirs(os.path.dirname(target + path), exist_ok=True)
    with open(target + path, "wb") as f:
        f.write(b"hello")
print("Fatal: There were 1 errors" if any(p.endswith("broken") for p in wanted) else "done")
sys.exit(1 if any(p.endswith("broken") for p in wanted) else 0)
"""


def test_samples_are_read_again_from_the_snapshot_into_a_private_folder(
        tmp_path: Path) -> None:
    target = tmp_path / "drill-samples"
    target.mkdir()
    (target / "left-over").write_text("from an earlier drill")
    argv = [sys.executable, "-c", FAKE_RESTORE, "restore", "abc123"]
    read = scratch_checks.snapshot_samples(argv, str(target), ["/srv/qlvb/app.db"])
    assert read == {"/srv/qlvb/app.db": {"sha256": HELLO_SHA256}}
    assert not target.exists()  # removed afterwards
    failed = scratch_checks.snapshot_samples(argv, str(target),
                                             ["/srv/qlvb/app.db", "/srv/qlvb/broken"])
    assert failed == {"/srv/qlvb/app.db": {"sha256": HELLO_SHA256},
                      "/srv/qlvb/broken": {"error": "Fatal: There were 1 errors"}}


def test_the_shipped_command_runs_the_module_with_its_argument_quoted(
        tmp_path: Path) -> None:
    root = restored(tmp_path)
    weird = tmp_path / "it's $(reboot)"
    weird.mkdir()
    command = scratch_command({"mode": "tree", "paths": [str(root), str(weird)],
                               "samples": [str(root / "d" / "app.db")]})
    assert command.startswith("python3 -c '")
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    found = json.loads(done.stdout)
    assert found["counts"] == {"files": 2, "dirs": 3, "others": 2, "total_size": 5}
    assert found["hashes"] == {str(root / "d" / "app.db"): HELLO_SHA256}
    prefixed = scratch_command({"mode": "tree", "paths": [], "samples": []}, "env A=b ")
    assert prefixed.startswith("env A=b python3 -c '")


def test_the_module_needs_only_the_standard_library() -> None:
    imported = set()
    for node in ast.walk(ast.parse(SCRATCH_CHECKS.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported and imported <= set(sys.stdlib_module_names) | {"__future__"}


@pytest.mark.parametrize("mode", ["tree", "samples"])
def test_main_prints_one_json_document(mode: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    args = {"mode": mode, "paths": [str(tmp_path)], "samples": [],
            "argv": [sys.executable, "-c", FAKE_RESTORE], "target": str(tmp_path / "t")}
    assert scratch_checks.main([json.dumps(args)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == ({"counts": {"files": 0, "dirs": 1, "others": 0, "total_size": 0},
                        "missing": [], "hashes": {}} if mode == "tree" else {})
