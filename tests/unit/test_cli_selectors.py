"""Every command that names estate things (``--system``, ``--site``, ``--to``, ``--host``)
refuses an unknown one with exit 2, naming it and the closest known names, before it
touches anything: no connection, no subprocess, not even the state folder."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from typer.core import TyperCommand, TyperGroup, TyperOption
from typer.testing import CliRunner

from orchestrator.actions.selection import require_known, unknown_message
from orchestrator.cli import app
from orchestrator.errors import PlanError
from orchestrator.estate import load_estate
from tests.helpers import EXAMPLE_ESTATE

runner = CliRunner()

#: (command line, the unknown value, the known name it should suggest)
CASES: list[tuple[list[str], str, str]] = [
    (["plan", "--system", "qvlb"], "qvlb", "qlvb"),
    (["plan", "--site", "danagn"], "danagn", "danang"),
    (["apply", "--system", "qvlb", "--yes"], "qvlb", "qlvb"),
    (["apply", "--site", "danagn", "--yes"], "danagn", "danang"),
    (["destroy", "--system", "qvlb", "--yes"], "qvlb", "qlvb"),
    (["destroy", "--system", "qlvb", "--site", "danagn", "--yes"], "danagn", "danang"),
    (["configure", "--system", "qvlb"], "qvlb", "qlvb"),
    (["discover", "--site", "danagn"], "danagn", "danang"),
    (["backup", "run", "--system", "qvlb"], "qvlb", "qlvb"),
    (["backup", "run", "--host", "qlvb-db-1"], "qlvb-db-1", "qlvb-db-01"),
    (["backup", "status", "--system", "qvlb"], "qvlb", "qlvb"),
    (["verify", "--system", "qvlb"], "qvlb", "qlvb"),
    (["verify", "history", "--system", "qvlb"], "qvlb", "qlvb"),
    (["drill", "run", "--system", "qvlb"], "qvlb", "qlvb"),
    (["drill", "history", "--system", "qvlb"], "qvlb", "qlvb"),
    (["migrate", "plan", "--system", "qlvbnq", "--to", "danang"], "qlvbnq", "qlvbqn"),
    (["migrate", "plan", "--system", "qlvbqn", "--to", "danagn"], "danagn", "danang"),
    (["migrate", "run", "--system", "qlvbnq", "--to", "danang"], "qlvbnq", "qlvbqn"),
    (["migrate", "run", "--system", "qlvbqn", "--to", "danagn"], "danagn", "danang"),
    (["migrate", "sync", "--system", "qlvbnq", "--to", "danang"], "qlvbnq", "qlvbqn"),
    (["migrate", "cutover", "--system", "qlvbqn", "--to", "danagn"], "danagn", "danang"),
    (["migrate", "status", "--system", "qlvbnq"], "qlvbnq", "qlvbqn"),
    (["retire", "--system", "qvlb", "--yes"], "qvlb", "qlvb"),
    (["archive", "index", "--system", "qvlb"], "qvlb", "qlvb"),
    (["archive", "find", "report", "--system", "qvlb"], "qvlb", "qlvb"),
    (["archive", "get", "--system", "qvlb", "/srv/a", "--to", "out"], "qvlb", "qlvb"),
    (["archive", "get", "--system", "qlvb", "--host", "qlvb-db-1", "/srv/a", "--to", "out"],
     "qlvb-db-1", "qlvb-db-01"),
    (["maintain", "--system", "qvlb"], "qvlb", "qlvb"),
    (["vault", "pull", "--system", "qvlb"], "qvlb", "qlvb"),
    (["hosts", "trust", "--host", "qlvb-db-1", "--yes"], "qlvb-db-1", "qlvb-db-01"),
    (["hosts", "forget", "--host", "qlvb-db-1"], "qlvb-db-1", "qlvb-db-01"),
]

#: selectors deliberately not checked: Ansible's dynamic-inventory protocol answers an
#: unknown host with {} (ansible-inventory asks for hosts it was given); --to of archive get
#: is a folder
EXEMPT = {("estate inventory", "--host"), ("archive get", "--to")}
SELECTORS = {"--system", "--site", "--host", "--to"}


class Touched(AssertionError):
    """A command reached for the world before refusing its input."""


@pytest.fixture
def untouchable(monkeypatch: pytest.MonkeyPatch) -> None:
    """No socket may connect and no subprocess may start while the test runs."""
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise Touched(f"touched the world: {args[1:]!r}")

    popen = subprocess.Popen.__init__

    def judge_calendars_only(self: Any, *args: Any, **kwargs: Any) -> Any:
        # the one program loading the estate runs: systemd's reading of its schedules
        if list(args[0][:2]) == ["systemd-analyze", "calendar"]:
            return popen(self, *args, **kwargs)
        return refuse(self, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(subprocess.Popen, "__init__", judge_calendars_only)


def _run(state: Path, args: list[str]) -> Any:
    return runner.invoke(app, ["--estate", str(EXAMPLE_ESTATE), "--state", str(state), *args],
                         env={"HOPNHAT_VAULT_PASSWORD_FILE": None})


@pytest.mark.parametrize(("args", "unknown", "suggested"), CASES,
                         ids=[" ".join(c[0][:3]) for c in CASES])
@pytest.mark.usefixtures("untouchable")
def test_an_unknown_selector_is_refused_with_exit_2_before_anything_is_touched(
        tmp_path: Path, args: list[str], unknown: str, suggested: str) -> None:
    state = tmp_path / "state"
    result = _run(state, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert f"'{unknown}'" in result.stderr and "in the estate" in result.stderr
    assert f"did you mean '{suggested}'" in result.stderr
    assert not state.exists(), "the state folder was touched before the refusal"


def _selectors(command: TyperCommand | TyperGroup, path: str,
               ctx: typer.Context) -> set[tuple[str, str]]:
    """(command path, option) of every selector option below ``command``. Typer's own
    classes: typer ships its own click, whose classes are not the click package's."""
    found = {(path, opt) for p in command.params if isinstance(p, TyperOption)
             for opt in p.opts if opt in SELECTORS}
    if isinstance(command, TyperGroup):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert isinstance(sub, TyperCommand | TyperGroup), name
            found |= _selectors(sub, f"{path} {name}".strip(), ctx)
    return found


def test_every_selector_option_of_every_command_is_in_the_cases() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    options = _selectors(root, "", typer.Context(root))
    assert {"--system", "--host"} <= {option for _, option in options}  # found some
    covered = set()
    for args, _, _ in CASES:
        words = [w for w in args if not w.startswith("-")]
        for depth in (1, 2):
            covered |= {(" ".join(words[:depth]), a) for a in args if a in SELECTORS}
    missing = {o for o in options - EXEMPT if o not in covered}
    assert not missing, f"selectors no test refuses an unknown value of: {sorted(missing)}"


def test_a_hostile_value_is_shown_escaped_and_cut(tmp_path: Path) -> None:
    hostile = "\x1b[2J\x1b[Hestate danang is valid\n" + "x" * 500
    result = _run(tmp_path / "state", ["destroy", "--system", hostile, "--yes"])
    assert result.exit_code == 2
    assert "\x1b" not in result.stderr and "\\x1b[2J" in result.stderr
    assert "x" * 100 not in result.stderr


def test_every_unknown_value_is_named_at_once() -> None:
    estate = load_estate(EXAMPLE_ESTATE)
    with pytest.raises(PlanError) as caught:
        require_known(estate, systems=["qvlb", "qlvb", "zzz"], sites=["moon"],
                      hosts=["qlvb-db-01", "nobody"])
    text = str(caught.value)
    assert caught.value.exit_code == 2
    for name in ("'qvlb'", "'zzz'", "'moon'", "'nobody'"):
        assert name in text
    assert "'qlvb-db-01'" not in text.split("did you mean")[0]
    require_known(estate, systems=["qlvb"], sites=["danang"], hosts=["qlvbqn-db-02"])


def test_a_long_list_of_known_names_is_cut() -> None:
    text = unknown_message("system", "nope", [f"s{i:03}" for i in range(100)])
    assert "s000" in text and "s099" not in text and "(70 more)" in text
    assert "did you mean" not in text
