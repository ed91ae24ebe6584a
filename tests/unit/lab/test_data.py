"""The synthetic data set: deterministic from (seed, day), sized as asked, a sound app.db."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from pathlib import Path

import pytest

from orchestrator.lab.data import DataSummary, generate, manifest_digest


def _files(root: Path) -> dict[str, tuple[str, int]]:
    """relative path → (sha256, mtime_ns) of every file under root."""
    found = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            found[path.relative_to(root).as_posix()] = (
                hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    return found


def test_same_seed_and_day_give_byte_identical_trees(tmp_path: Path) -> None:
    one = generate(tmp_path / "one", "qlvb", 3, 80, day=2)
    two = generate(tmp_path / "two", "qlvb", 3, 80, day=2)
    assert one == two
    assert _files(tmp_path / "one") == _files(tmp_path / "two")  # bytes and mtimes
    assert manifest_digest(tmp_path / "one") == one.manifest_sha256
    other = generate(tmp_path / "other", "dvc", 3, 80, day=2)
    assert other.manifest_sha256 != one.manifest_sha256


def test_a_later_day_changes_about_change_rate_of_the_files(tmp_path: Path) -> None:
    generate(tmp_path / "d0", "qlvb", 4, 400, day=0, change_rate=0.1)
    generate(tmp_path / "d1", "qlvb", 4, 400, day=1, change_rate=0.1)
    before, after = _files(tmp_path / "d0"), _files(tmp_path / "d1")
    docs = {p for p in before.keys() | after.keys() if p.startswith("documents/")}
    changed = {p for p in docs if before.get(p, ("",))[0] != after.get(p, ("",))[0]}
    assert 0.07 * 400 <= len(changed) <= 0.13 * 400
    assert before.keys() - after.keys(), "some documents are deleted"
    assert after.keys() - before.keys(), "some documents are added"
    assert before["app.db"][0] != after["app.db"][0]


def test_generating_a_day_over_an_older_one_writes_only_the_changes(tmp_path: Path) -> None:
    dest = tmp_path / "data"
    generate(dest, "qlvb", 3, 200, day=0)
    ctimes = {p: (dest / p).stat().st_ctime_ns for p in _files(dest)}
    in_place = generate(dest, "qlvb", 3, 200, day=3)
    fresh = generate(tmp_path / "fresh", "qlvb", 3, 200, day=3)
    assert in_place == fresh
    assert _files(dest) == _files(tmp_path / "fresh")
    untouched = [p for p, c in ctimes.items()
                 if (dest / p).exists() and (dest / p).stat().st_ctime_ns == c]
    assert len(untouched) >= 0.7 * 200  # unchanged documents are not rewritten


def test_regenerating_the_same_day_is_a_no_op(tmp_path: Path) -> None:
    dest = tmp_path / "data"
    first = generate(dest, "qlvb", 2, 60, day=1)
    docs = [p for p in _files(dest) if p.startswith("documents/")]
    ctimes = {p: (dest / p).stat().st_ctime_ns for p in docs}
    assert generate(dest, "qlvb", 2, 60, day=1) == first
    assert {p: (dest / p).stat().st_ctime_ns for p in docs} == ctimes


@pytest.mark.parametrize(("size_mb", "files"), [(20, 300), (5, 40), (0.5, 100)])
def test_total_size_is_close_to_size_mb(tmp_path: Path, size_mb: float, files: int) -> None:
    summary = generate(tmp_path, "portal", size_mb, files)
    on_disk = [tmp_path / p for p in _files(tmp_path)]
    assert summary.files == len(on_disk) == files + 1  # the documents and app.db
    assert summary.bytes == sum(p.stat().st_size for p in on_disk)
    assert abs(summary.bytes - size_mb * 2**20) <= 0.05 * size_mb * 2**20


def test_sizes_are_mixed_many_small_a_few_large(tmp_path: Path) -> None:
    generate(tmp_path, "ioc", 20, 400)
    sizes = sorted(p.stat().st_size for p in (tmp_path / "documents").rglob("*")
                   if p.is_file())
    median, mean = sizes[len(sizes) // 2], sum(sizes) / len(sizes)
    assert median < mean / 2
    assert sizes[-1] > 10 * median


def test_folders_look_like_a_document_management_system(tmp_path: Path) -> None:
    generate(tmp_path, "qlvb", 2, 100)
    pattern = re.compile(r"^documents/20\d\d/(so|van-phong|thanh-tra)-[a-z-]+/[a-z-]+-\d{6}"
                         r"\.(pdf|docx|xlsx|jpg|txt|xml)$")
    paths = [p for p in _files(tmp_path) if p != "app.db"]
    assert paths and all(pattern.match(p) for p in paths), paths[:5]
    assert len({p.split("/")[1] for p in paths}) > 1
    assert len({p.split("/")[2] for p in paths}) > 1


def test_app_db_is_sound_and_describes_the_files(tmp_path: Path) -> None:
    summary = generate(tmp_path, "qlvb", 2, 120, day=2)
    db = sqlite3.connect(tmp_path / "app.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = db.execute("SELECT path, size, sha256 FROM documents WHERE path IS NOT NULL")
        described = {path: (sha, size) for path, size, sha in rows}
        paper = db.execute("SELECT count(*) FROM documents WHERE path IS NULL").fetchone()[0]
        audit = db.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    finally:
        db.close()
    files = {p: h for p, (h, _) in _files(tmp_path).items() if p != "app.db"}
    assert set(described) == set(files)
    for path, (sha, size) in described.items():
        assert sha == files[path]
        assert size == (tmp_path / path).stat().st_size
    assert paper >= 300
    assert audit > 0
    assert summary.db_rows == len(described) + paper + audit


def test_manifest_digest_sees_a_single_changed_byte(tmp_path: Path) -> None:
    summary = generate(tmp_path, "qlvb", 1, 20)
    victim = next(p for p in (tmp_path / "documents").rglob("*") if p.is_file())
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    assert manifest_digest(tmp_path) != summary.manifest_sha256


def test_files_outside_the_data_set_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    stray = tmp_path / "documents" / "2024" / "so-noi-vu" / "stray.pdf"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"x")
    generate(tmp_path, "qlvb", 1, 20)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not stray.exists()


@pytest.mark.parametrize("kwargs", [{"size_mb": 0}, {"files": 0}, {"day": -1},
                                    {"change_rate": 1.5}])
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict[str, float]) -> None:
    args: dict[str, float] = {"size_mb": 1, "files": 10, "day": 0, "change_rate": 0.05}
    args.update(kwargs)
    with pytest.raises(ValueError):
        generate(tmp_path, "x", args["size_mb"], int(args["files"]), int(args["day"]),
                 args["change_rate"])


def test_summary_is_plain_data() -> None:
    summary = DataSummary(files=1, bytes=2, db_rows=3, manifest_sha256="ab")
    assert (summary.files, summary.bytes, summary.db_rows) == (1, 2, 3)
