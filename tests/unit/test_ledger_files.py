"""The run ledger's files are its owner's alone from the moment they exist: the state
folder 0700, the database and SQLite's -wal and -shm files 0600 (not 0644 for as long as
the first run lasts)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.ledger import Ledger


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """An operator's usual umask (022), whatever the test runner's."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_the_ledger_and_its_wal_and_shm_are_born_0600(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledger.sqlite"
    with Ledger(path) as ledger:
        ledger.start("backup", "example", {"system": "qlvb"})  # the first write
        files = {p.name: mode(p) for p in path.parent.iterdir()}
        assert files == {"ledger.sqlite": 0o600, "ledger.sqlite-wal": 0o600,
                         "ledger.sqlite-shm": 0o600}


def test_a_new_state_folder_is_0700(tmp_path: Path) -> None:
    with Ledger(tmp_path / "state" / "ledger.sqlite"):
        assert mode(tmp_path / "state") == 0o700


def test_an_open_state_folder_and_an_older_ledger_are_narrowed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    for name in ("ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm"):
        (state / name).touch(mode=0o644)  # an empty database file is a new database
    with Ledger(state / "ledger.sqlite"):
        pass
    assert mode(state) == 0o700
    assert all(mode(p) == 0o600 for p in state.iterdir()), \
        {p.name: oct(mode(p)) for p in state.iterdir()}


def test_an_existing_ledger_is_opened_by_sqlite_alone(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """POSIX locks are per process: closing any descriptor of the database file drops the
    locks every connection of this process holds on it (seen as "disk I/O error" and "file
    is not a database" in a drill's ledger), so hopnhat opens an existing one only through
    SQLite."""
    path = tmp_path / "state" / "ledger.sqlite"
    opened: list[str] = []
    real_open = os.open

    def watching(file: str | os.PathLike[str], *args: int) -> int:
        fd = real_open(file, *args)
        opened.append(str(file))  # a descriptor there was (an O_EXCL refusal makes none)
        return fd

    with Ledger(path) as first:
        monkeypatch.setattr(os, "open", watching)
        run = first.start("drill", "example", {})
        with Ledger(path) as second:
            second.event(run, "lgsp", "step", name="restore")
        assert str(path) not in opened
        assert len(first.events(run)) == 1


def test_a_shared_folder_given_as_the_state_keeps_its_mode_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """--state /tmp (or a home) must not become 0700 because hopnhat opened its ledger
    there: only hopnhat's own folder (new, empty, or holding the ledger) is narrowed."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    (shared / "someone-elses-file").write_text("x")
    with caplog.at_level("WARNING", logger="orchestrator.ledger"), \
            Ledger(shared / "ledger.sqlite"):
        pass
    assert mode(shared) == 0o1777
    assert any("open to other users" in r.getMessage() for r in caplog.records)
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    (home / ".profile").write_text("x")
    with Ledger(home / "ledger.sqlite"):
        assert mode(home) == 0o755
