"""write_atomically: a file is replaced whole, with the mode asked for, and a failure leaves
the old file and no temporary one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.files import write_atomically


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644])
def test_the_file_gets_exactly_the_mode_asked_for(tmp_path: Path, mode: int) -> None:
    old = os.umask(0o077)  # the umask takes nothing away from the mode asked for
    try:
        write_atomically(tmp_path / "report.prom", "x 1\n", mode)
    finally:
        os.umask(old)
    assert (tmp_path / "report.prom").stat().st_mode & 0o7777 == mode


def test_a_private_file_replaces_a_readable_one_private(tmp_path: Path) -> None:
    path = tmp_path / "vault.yml"
    path.write_text("old\n")
    path.chmod(0o644)
    write_atomically(path, b"new\n", 0o600)
    assert path.stat().st_mode & 0o7777 == 0o600
    assert path.read_bytes() == b"new\n"


def test_text_is_written_as_utf8_and_bytes_as_they_are(tmp_path: Path) -> None:
    write_atomically(tmp_path / "a.txt", "Sở Tư pháp\n")
    write_atomically(tmp_path / "b.bin", b"\x00\xff\n")
    assert (tmp_path / "a.txt").read_bytes() == "Sở Tư pháp\n".encode()
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff\n"


def test_missing_folders_are_made(tmp_path: Path) -> None:
    path = tmp_path / "state" / "textfile" / "hopnhat_backup_qlvb.prom"
    write_atomically(path, "x 1\n")
    assert path.read_text() == "x 1\n"


def test_the_new_file_is_whole_and_on_disk_before_one_rename_replaces_the_old(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "backup-qlvb.json"
    path.write_text("old\n")
    reader = path.open()  # a reader that opened the old file keeps reading it whole
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        # just before the rename: the old file is untouched, the new one complete beside it
        events.append("replace")
        assert Path(source).parent == path.parent
        assert Path(source).read_text() == "new and longer\n"
        assert Path(source).stat().st_mode & 0o7777 == 0o644
        assert path.read_text() == "old\n"
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    before = path.stat().st_ino
    write_atomically(path, "new and longer\n")
    assert events == ["fsync", "replace"]
    assert path.read_text() == "new and longer\n"
    assert path.stat().st_ino != before  # replaced, not written over
    assert reader.read() == "old\n"
    reader.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup-qlvb.json"]


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"),
                                     KeyboardInterrupt()])
def test_a_failure_keeps_the_old_file_and_leaves_no_temporary_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException) -> None:
    path = tmp_path / "hopnhat-backup-qlvb.service"
    path.write_text("old\n")

    def failing(fd: int) -> None:
        raise failure

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(type(failure)):
        write_atomically(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_failed_rename_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "report"
    target.mkdir()
    (target / "inside").write_text("x")  # a folder in the way: the rename fails
    with pytest.raises(OSError):
        write_atomically(target, "new\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_two_writers_never_share_a_temporary_file(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "devices.json"
    seen: list[str] = []
    real_replace = os.replace

    def replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        seen.append(str(source))
        if len(seen) == 1:  # a second writer starts while the first is about to rename
            write_atomically(path, "second\n")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    write_atomically(path, "first\n")
    assert len(set(seen)) == 2
    assert path.read_text() == "first\n"  # the last rename wins, whole
    assert [p.name for p in tmp_path.iterdir()] == ["devices.json"]
