"""What every command shares: global options on either side of the command, exit codes that
tell a typo (64) from bad input (2), text from the estate that cannot drive a terminal,
lab.yml checked with the estate, and vCenter's TLS check turned off only loudly."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.cli.app import hoist_global_options
from orchestrator.errors import EXIT_BAD_INPUT, EXIT_USAGE
from tests.helpers import EXAMPLE_ESTATE

runner = CliRunner()


@pytest.mark.parametrize(("given", "parsed"), [
    (["estate", "validate", "--estate", "D"], ["--estate", "D", "estate", "validate"]),
    (["estate", "validate", "--estate=D", "-vv"], ["--estate=D", "-vv", "estate", "validate"]),
    (["--state", "S", "plan", "--system", "qlvb", "--estate", "D"],
     ["--state", "S", "--estate", "D", "plan", "--system", "qlvb"]),
    (["plan", "--json", "--verbose"], ["--verbose", "plan", "--json"]),
    (["archive", "find", "--", "--estate", "x"], ["archive", "find", "--", "--estate", "x"]),
    (["estate", "validate", "--estate"], ["estate", "validate", "--estate"]),
])
def test_global_options_after_the_command_move_before_it(given: list[str],
                                                          parsed: list[str]) -> None:
    assert hoist_global_options(given) == parsed


def test_validate_takes_the_estate_after_the_command(tmp_path: Path) -> None:
    estate = tmp_path / "estate"
    shutil.copytree(EXAMPLE_ESTATE, estate)
    done = runner.invoke(app, ["estate", "validate", "--json", "--estate", str(estate)])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["valid"] is True


@pytest.mark.parametrize("args", [
    ["estate", "validate", "--no-such-option"],
    ["no-such-command"],
    ["backup", "run", "--system"],
    ["drill", "run"],
])
def test_a_usage_error_exits_64_not_2(args: list[str]) -> None:
    done = runner.invoke(app, ["--estate", str(EXAMPLE_ESTATE), *args])
    assert done.exit_code == EXIT_USAGE, done.output


def test_an_options_value_that_is_not_valid_is_bad_input(tmp_path: Path) -> None:
    done = runner.invoke(app, ["--estate", str(EXAMPLE_ESTATE), "--state", str(tmp_path), "verify",
                               "--read-data-subset", "half"])
    assert done.exit_code == EXIT_BAD_INPUT, done.output


def test_the_help_and_the_errors_module_say_what_the_codes_mean() -> None:
    done = runner.invoke(app, ["--help"])
    assert "64 usage" in done.output and "2 bad input" in done.output


def test_a_broken_lab_yml_fails_validate(tmp_path: Path) -> None:
    estate = tmp_path / "estate"
    shutil.copytree(EXAMPLE_ESTATE, estate)
    with (estate / "lab.yml").open("a") as lab:
        lab.write("nonsense_key: 1\n")
    done = runner.invoke(app, ["--estate", str(estate), "estate", "validate", "--json"])
    assert done.exit_code == EXIT_BAD_INPUT
    assert json.loads(done.stdout)["problems"] == [
        {"file": "lab.yml", "key": "nonsense_key", "message": "unknown key"}]


def test_an_escape_sequence_in_the_estate_reaches_no_terminal(tmp_path: Path) -> None:
    estate = tmp_path / "estate"
    shutil.copytree(EXAMPLE_ESTATE, estate)
    with (estate / "systems" / "qlvb.yml").open("a") as qlvb:
        qlvb.write('"\\e[2J\\e[Hestate danang is valid\\x9b": 1\n')
    for args in (["estate", "validate"], ["estate", "validate", "--json"]):
        done = runner.invoke(app, ["--estate", str(estate), *args])
        assert done.exit_code == EXIT_BAD_INPUT
        for ch in ("\x1b", "\x9b"):
            assert ch not in done.output
        assert "\\x1b[2J" in done.output or "\\\\x1b[2J" in done.output


def test_the_consoles_write_any_control_character_visibly() -> None:
    from rich.table import Table

    from orchestrator.cli.common import SafeConsole

    console = SafeConsole(force_terminal=True, width=80)
    with console.capture() as captured:
        table = Table()
        table.add_column("system")
        table.add_row("qlvb\x1b]0;owned\x07\x9b2J")
        console.print(table)
        console.print("host said: \x1b[31mred", style="bold")
    out = captured.get()
    assert "\x1b]0" not in out and "\x9b" not in out and "\x1b[31m" not in out
    assert "qlvb\\x1b]0;owned\\x9b2J" in out and "host said: \\x1b" in out


def test_print_json_escapes_c1_and_bidi_controls(capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.cli.common import print_json

    print_json({"k": "a\x9bb\u202ec\x1b"})
    out = capsys.readouterr().out
    assert "\x9b" not in out and "\u202e" not in out and "\x1b" not in out
    assert json.loads(out) == {"k": "a\x9bb\u202ec\x1b"}


def test_an_insecure_site_is_warned_of_by_name(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    from orchestrator.actions.provision import vcenters as provision_vcenters
    from orchestrator.adapters import vsphere
    from orchestrator.estate import load_estate
    from orchestrator.settings import Paths

    estate_dir = tmp_path / "estate"
    shutil.copytree(EXAMPLE_ESTATE, estate_dir)
    site = estate_dir / "sites" / "danang.yml"
    site.write_text(site.read_text().replace("  ca_bundle:", "  insecure: true\n  ca_bundle:"))
    paths = Paths(tmp_path / "state", load_estate(estate_dir))

    class Secrets:  # no vault here: the password is not what this test is about
        def __init__(self, paths: Paths) -> None:
            del paths

        def get(self, ref: object) -> str:
            return "not-used"

    pytest.MonkeyPatch().setattr(provision_vcenters, "Secrets", Secrets)
    found = {e.url: e for e in provision_vcenters.endpoints(paths, ["danang", "quangnam"])}
    insecure = [e for e in found.values() if e.insecure]
    assert [e.sites for e in insecure] == [("danang",)]
    assert insecure[0].insecure_by == "vcenter.insecure: true in sites/danang.yml"
    vsphere._warned.clear()
    with caplog.at_level(logging.WARNING, logger="orchestrator.adapters.vsphere"):
        vsphere._ssl_context(insecure[0])
        vsphere._ssl_context(insecure[0])  # once a command
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1
    assert "(site danang)" in warned[0] and "sites/danang.yml" in warned[0]
    flagged = provision_vcenters.endpoints(paths, ["quangnam"], insecure=True)
    assert flagged[0].insecure_by == "--insecure"


def test_a_link_in_foreign_markup_cannot_end_the_terminals_sequence() -> None:
    from orchestrator.cli.common import SafeConsole

    console = SafeConsole(force_terminal=True, width=80)
    with console.capture() as captured:
        console.print("[link=http://x\x1b]0;PWNED\x07]a[/link]")
    out = captured.get()
    assert "\x1b]0;PWNED" not in out and "\x07" not in out


def test_log_lines_write_control_characters_visibly() -> None:
    from orchestrator.cli.common import SafeFormatter

    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "restic said: %s", (
        "\x1b[2Jfine\nnext",), None)
    line = SafeFormatter("%(message)s").format(record)
    assert line == "restic said: \\x1b[2Jfine\nnext"


def test_a_commands_own_option_value_is_never_taken_for_a_global_option(
        tmp_path: Path) -> None:
    assert hoist_global_options(["apply", "--reason", "--state", "--yes"],
                                frozenset({"--reason"})) == ["apply", "--reason", "--state",
                                                             "--yes"]
    # through the real command line: --reason keeps "--state" (and "-v") as its value, the
    # --estate after it still moves
    for value in ("--state", "-v"):
        done = runner.invoke(app, ["apply", "--no-backup-gate", "--reason", value, "--system",
                                   "qvlb", "--estate", str(EXAMPLE_ESTATE), "--state",
                                   str(tmp_path)])
        assert done.exit_code == EXIT_BAD_INPUT, done.output
        assert "no system 'qvlb'" in done.output


@pytest.mark.parametrize("state", ['/tmp/a"b', "/tmp/a\nb", "/tmp/a\x1bb"])
def test_a_state_folder_ssh_could_not_be_told_is_bad_input(state: str) -> None:
    done = runner.invoke(app, ["--state", state, "--estate", str(EXAMPLE_ESTATE), "estate",
                               "inventory"])
    assert done.exit_code == EXIT_BAD_INPUT, done.output
    assert "--state" in done.output and "\x1b" not in done.output
