"""migrate's pure parts: the estate's migration section and its target VMs, the snapshot
choice, the manifest and its comparisons, the restore command lines, the tree script, the
state read from the ledger (the handover record's words and times:
tests/unit/reports/test_migrate.py)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.actions.migrate import manifest
from orchestrator.actions.migrate.plan import choose, migration_of, plan_migration
from orchestrator.actions.migrate.run import TREE_SCRIPT, restore_argv, tree_command
from orchestrator.actions.migrate.state import COPIED, CUT_OVER, IN_SYNC, PLANNED, state_of
from orchestrator.actions.migrate.status import drift_counts, excluded
from orchestrator.adapters.restic import Repository, Snapshot
from orchestrator.adapters.restic_results import Node
from orchestrator.errors import PlanError
from orchestrator.ledger import Ledger
from tests.helpers import EstateCopy

QN = "systems/qlvbqn.yml"


# ---------------------------------------------------------------- the estate


def test_the_example_moves_qlvbqn_to_a_new_vm_after_every_other_address(
        estate_copy: EstateCopy) -> None:
    estate = estate_copy.load()
    [target] = estate.targets_of("qlvbqn")
    assert (target.name, target.site, target.source, target.data) == \
        ("qlvbqn-db-02", "danang", "qlvbqn-db-01", True)
    assert target.name not in {vm.name for vm in estate.vms}
    assert str(target.ip) not in {str(vm.ip) for vm in estate.vms}
    # declaring the move shifts no running VM's address
    before = {vm.name: vm.ip for vm in estate.vms}
    estate_copy.edit(QN, lambda d: d.pop("migration"))
    assert {vm.name: vm.ip for vm in estate_copy.load().vms} == before


def test_a_migration_is_checked_against_the_sites_and_the_data_roles(
        estate_copy: EstateCopy) -> None:
    def broken(data: dict[str, Any]) -> None:
        data["migration"]["to"] = "hue"
    estate_copy.edit(QN, broken)
    estate_copy.assert_only_problems((QN, "migration.to", "unknown site 'hue'"))


def test_every_data_role_needs_a_receiver_of_its_count(estate_copy: EstateCopy) -> None:
    def broken(data: dict[str, Any]) -> None:
        data["migration"]["vms"][0]["role"] = "dbnew"
    estate_copy.edit(QN, broken)
    estate_copy.assert_only_problems((QN, "migration.vms", "no role 'db'"))

    def count(data: dict[str, Any]) -> None:
        data["migration"]["vms"][0].update(role="db", count=2)
    estate_copy.edit(QN, count)
    estate_copy.assert_only_problems((QN, "migration.vms[0].count", "2 VM(s) to receive"))


@pytest.mark.parametrize(("change", "key", "fragment"), [
    ({"parallel_run": "2h"}, "migration", "shorter than a day"),
    ({"vms": [{"role": "db", "site": "quangnam", "cpu": 2, "memory_mb": 2048,
               "disks_gb": [40], "network": "srv", "data": True}]}, "migration",
     "builds at its site to"),
    ({"colour": "red"}, "migration.colour", "unknown key"),
])
def test_bad_migration_sections_are_named(estate_copy: EstateCopy, change: dict[str, Any], key: str,
                                          fragment: str) -> None:
    estate_copy.edit(QN, lambda d: d["migration"].update(change))
    problems = estate_copy.problems()
    assert any(p[0] == QN and p[1].startswith(key) and fragment in p[2] for p in problems), \
        problems


def test_an_unknown_time_zone_is_refused(estate_copy: EstateCopy) -> None:
    estate_copy.edit("estate.yml", lambda d: d.update(timezone="Asia/Hanoi_City"))
    estate_copy.assert_only_problems(("estate.yml", "timezone", "unknown time zone"))


def test_migration_of_names_what_is_wrong(estate_copy: EstateCopy) -> None:
    estate = estate_copy.load()
    for code, to, fragment in (("nope", "danang", "no system 'nope'"),
                               ("qlvbqn", "hue", "--to 'hue'"),
                               ("qlvb", "danang", "has no migration"),
                               ("qlvbqn", "quangnam", "migration.to is 'danang'")):
        with pytest.raises(PlanError, match=fragment) as caught:
            migration_of(estate, code, to)
        assert caught.value.exit_code == 2
    plan = plan_migration(estate, "qlvbqn", "danang")
    assert [p.source.name for p in plan.pairs] == ["qlvbqn-db-01"]
    assert plan.as_dict()["parallel_run_days"] == 365.0


# ---------------------------------------------------------------- snapshots


def _snap(sid: str, host: str, age_h: float, now: float) -> Snapshot:
    return Snapshot(id=sid * 8, short_id=sid, username="root",
                    time=datetime.fromtimestamp(now - age_h * 3600, UTC), hostname=host,
                    paths=("/srv/qlvb",), tags=())


def test_the_newest_snapshot_is_moved_and_an_old_one_only_with_a_reason(
        estate_copy: EstateCopy) -> None:
    estate = estate_copy.load()
    sources = [vm for vm in estate.vms_of("qlvbqn") if vm.data]
    now = 1_800_000_000.0
    snaps = [_snap("aaaaaaaa", "qlvbqn-db-01", 5, now), _snap("bbbbbbbb", "qlvbqn-db-01", 0.2, now)]
    assert choose("qlvbqn", sources, snaps, "latest", 3600, "", now)["qlvbqn-db-01"].id \
        .startswith("bbbb")
    with pytest.raises(PlanError, match=r"is 5h0m0s old, older than the tier's RPO \(1h\)"):
        choose("qlvbqn", sources, snaps, "aaaaaaaa", 3600, "", now)
    named = choose("qlvbqn", sources, snaps, "aaaaaaaa", 3600, "the fresh one is corrupt", now)
    assert named["qlvbqn-db-01"].id.startswith("aaaa")
    with pytest.raises(PlanError, match="no snapshot cccccccc"):
        choose("qlvbqn", sources, snaps, "cccccccc", 3600, "x", now)
    with pytest.raises(PlanError, match="holds no snapshot of qlvbqn-db-01"):
        choose("qlvbqn", sources, [], "latest", 3600, "", now)
    stale = [_snap("aaaaaaaa", "qlvbqn-db-01", 5, now)]
    with pytest.raises(PlanError, match="fresh backup"):
        choose("qlvbqn", sources, stale, "latest", 3600, "a reason is not enough", now)


# ---------------------------------------------------------------- the manifest


def _entry(path: str, kind: str = "f", size: int = 3, mode: int = 0o644, mtime: int = 10,
           sha: str | None = "ab") -> manifest.Entry:
    return manifest.Entry(path, kind, mode, mtime, size if kind == "f" else 0,
                          sha if kind == "f" else None)


def test_restic_nodes_become_entries_with_unix_modes_and_nanoseconds() -> None:
    node = Node(path="/srv/a", name="a", type="file", size=5, mode=0o755 | (1 << 23),
                mtime="2026-12-06T15:04:05.123456789+07:00")
    entry = manifest.from_node(node)
    assert entry.mode == 0o4755 and entry.size == 5 and entry.type == "f"
    assert entry.mtime_ns == int(datetime(2026, 12, 6, 8, 4, 5, tzinfo=UTC).timestamp()) \
        * 1_000_000_000 + 123_456_789
    folder = manifest.from_node(Node(path="/srv", name="srv", type="dir",
                                     mode=0o755 | (1 << 31), mtime="2026-12-06T08:04:05Z"))
    assert (folder.type, folder.mode, folder.size) == ("d", 0o755, 0)
    with pytest.raises(ValueError, match="RFC 3339"):
        manifest.mtime_ns("yesterday")


def test_compare_names_missing_extra_and_different_entries() -> None:
    snapshot = {p: _entry(p) for p in ("/s/a", "/s/b", "/s/c")}
    snapshot["/s"] = _entry("/s", "d", mtime=1)
    restored = {"/s": _entry("/s", "d", mtime=99),  # a folder's mtime is not compared
                "/s/a": _entry("/s/a"), "/s/b": _entry("/s/b", size=4, mode=0o600),
                "/s/x": _entry("/s/x")}
    d = manifest.compare(snapshot, restored)
    assert d.counts == {"missing": 1, "extra": 1, "different": 1} and not d.ok
    assert d.missing == ("/s/c",) and d.extra == ("/s/x",)
    assert d.different == (("/s/b", "size 3 → 4, mode 0644 → 0600"),)
    assert manifest.compare(snapshot, dict(snapshot)).ok
    many = manifest.compare({f"/s/{i:03d}": _entry(f"/s/{i:03d}") for i in range(80)}, {})
    assert many.counts["missing"] == 80 and len(many.missing) == manifest.SHOWN
    assert "80 missing entries" in many.sentences("vm")[0]


def test_changes_since_the_last_manifest_are_by_content() -> None:
    before = {"/a": _entry("/a", sha="1"), "/b": _entry("/b", sha="2"), "/c": _entry("/c")}
    after = {"/a": _entry("/a", sha="1", mtime=50), "/b": _entry("/b", sha="3"),
             "/d": _entry("/d")}
    c = manifest.changes(before, after)
    assert (c.added, c.changed, c.removed) == (("/d",), ("/b",), ("/c",))


def test_the_stored_manifest_is_the_same_bytes_every_time(tmp_path: Path) -> None:
    entries = {"/s/é": _entry("/s/é"), "/s": _entry("/s", "d")}
    text = manifest.lines("vm1", entries)
    one, two = tmp_path / "1.gz", tmp_path / "2.gz"
    assert manifest.write(one, text) == manifest.write(two, text)
    assert one.read_bytes() == two.read_bytes()
    assert gzip.decompress(one.read_bytes()) == text
    assert manifest.read(one) == {"vm1": entries}
    totals = manifest.totals(entries.values(), ["/s"])
    assert totals == {"/s": {"files": 1, "dirs": 1, "others": 0, "bytes": 3}}


# ---------------------------------------------------------------- commands


def test_restore_lines_confine_delete_to_each_backup_path() -> None:
    repo = Repository(url="sftp:u@h:/repo", password_file=Path("/etc/p"),
                      cache_dir=Path("/var/cache/c"), name="x")
    [whole] = restore_argv("/usr/bin/restic", repo, "abc123", ["/srv/a"], delete=False)
    assert whole[0] == "/usr/bin/restic" and "--delete" not in whole
    assert whole[whole.index("--target") + 1] == "/" and "--verify" in whole
    lines = restore_argv("/r", repo, "abc123", ["/srv/a", "/srv/b c"], delete=True)
    assert [line[line.index("--target") + 1] for line in lines] == ["/srv/a", "/srv/b c"]
    assert all("--delete" in line and "--verify" in line for line in lines)
    assert "abc123:/srv/b c" in lines[1]


def test_tree_script_scans_and_deletes_only_below_the_paths(tmp_path: Path) -> None:
    root = tmp_path / "srv"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f.txt").write_bytes(b"hello")
    (root / "gone").mkdir()
    (root / "gone" / "x").write_text("x")
    (root / "link").symlink_to("/etc/passwd")
    outside = tmp_path / "keep.txt"
    outside.write_text("keep")
    text = TREE_SCRIPT.read_text()

    def tree(args: dict[str, Any], stdin: str = "") -> list[dict[str, Any]]:
        done = subprocess.run([sys.executable, "-c", text, json.dumps(args)], input=stdin,
                              capture_output=True, text=True, check=True)
        return [json.loads(line) for line in done.stdout.splitlines()]

    found = tree({"mode": "scan", "paths": [str(root), str(tmp_path / "nope")], "hash": True})
    by_path = {e["p"]: e for e in found if "p" in e}
    assert by_path[str(root / "d" / "f.txt")]["h"] == \
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert by_path[str(root / "link")]["t"] == "l"  # a link is listed, never followed
    assert found[-1] == {"end": True, "missing": [str(tmp_path / "nope")]}
    doomed = [str(root / "gone"), str(root / "gone" / "x"), str(outside),
              str(root / ".." / "keep.txt")]
    report = tree({"mode": "delete", "paths": [str(root)]},
                  "".join(json.dumps(p) + "\n" for p in doomed))[-1]
    assert report["deleted"] == 2 and len(report["errors"]) == 2
    assert outside.exists() and not (root / "gone").exists()
    # a backup path's own metadata, as the snapshot has it
    (root / "d").chmod(0o700)
    fixed = tree({"mode": "meta", "paths": [str(root / "d")],
                  "meta": {str(root / "d"): {"m": 0o750, "u": None, "g": None,
                                             "n": 1_700_000_000_123_456_789}}})[-1]
    assert fixed == {"fixed": 1, "errors": []}
    st = (root / "d").stat()
    assert (st.st_mode & 0o7777, st.st_mtime_ns) == (0o750, 1_700_000_000_123_456_789)
    # the command quotes the script and its argument: nothing reaches a shell unquoted
    assert tree_command({"mode": "scan", "paths": ["/srv/$(reboot)"]}).startswith(
        "python3 -c '")


# ---------------------------------------------------------------- state and record


def test_the_state_follows_the_last_passed_step(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert state_of(ledger, "e", "q").name == PLANNED

        def step(name: str, verdict: str, **summary: object) -> str:
            run_id = ledger.start("migrate", "e", {"system": "q", "to": "dn", "step": name})
            ledger.finish(run_id, verdict, {"evidence": f"/s/{run_id}/evidence.json", **summary})
            return run_id

        step("run", "failed")
        assert state_of(ledger, "e", "q").name == PLANNED
        copied = step("run", "passed", manifest_ok=True)
        assert state_of(ledger, "e", "q").name == COPIED
        assert state_of(ledger, "e", "q").last_manifest == f"/s/{copied}/manifest.jsonl.gz"
        step("sync", "passed")
        step("cutover", "failed")
        state = state_of(ledger, "e", "q")
        assert state.name == IN_SYNC and state.last_run_verdict == "failed"
        step("cutover", "passed", parallel_until=1_900_000_000.0)
        state = state_of(ledger, "e", "q")
        assert state.name == CUT_OVER and state.parallel_until == "2030-03-17T17:46:40Z"
        assert state_of(ledger, "other", "q").name == PLANNED


def test_drift_counts_leave_excluded_files_out() -> None:
    assert excluded("/srv/q/a.tmp", ["*.tmp"]) and not excluded("/srv/q/a.txt", ["*.tmp"])
    assert excluded("/srv/q/cache/x", ["/srv/q/cache/*"])
    before = {"/a": _entry("/a"), "/b": _entry("/b")}
    now = {"/a": _entry("/a", mtime=11), "/c": _entry("/c"), "/c.tmp": _entry("/c.tmp")}
    assert drift_counts(before, now, ["*.tmp"]) == {"added": 1, "changed": 1, "removed": 1}
    assert timedelta(days=1)  # the module's imports stay used
