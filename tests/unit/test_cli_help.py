"""Every command's ``--help``: paragraphs reflowed to the terminal, lists kept as written."""

from __future__ import annotations

import itertools
from typing import Any

import typer
import typer.main
from typer.core import TyperGroup
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.cli.common import reflow


def test_a_paragraph_is_one_line_and_lists_and_indented_lines_are_kept() -> None:
    text = """First line
    goes on.

    A paragraph written
    over three
    lines.

    - an item
    - another item

    Example:
      hopnhat plan"""
    assert reflow(text) == ("First line goes on.\n\nA paragraph written over three lines.\n\n"
                            "- an item\n- another item\n\nExample:\n  hopnhat plan")
    assert reflow(None) is None and reflow("") == ""


def _commands(command: Any, path: str = "hopnhat") -> list[tuple[str, Any]]:
    found = [(path, command)]
    if isinstance(command, TyperGroup):
        with typer.Context(command) as ctx:
            for name in command.list_commands(ctx):
                found += _commands(command.get_command(ctx, name), f"{path} {name}")
    return found


def test_no_command_help_keeps_the_docstrings_line_breaks() -> None:
    commands = _commands(typer.main.get_command(app))
    assert len(commands) > 20
    for path, command in commands:
        for paragraph in (getattr(command, "help", None) or "").split("\n\n"):
            lines = paragraph.splitlines()
            if len(lines) > 1:  # only lists and indented blocks keep their lines
                assert any(line.lstrip()[:1] in ("-", "*", "•") or line.startswith(" ")
                           or line[:1].isdigit() for line in lines), (path, paragraph)


def test_apply_help_reads_as_paragraphs_at_80_columns() -> None:
    done = CliRunner().invoke(app, ["apply", "--help"], terminal_width=80,
                              env={"COLUMNS": "80"})
    assert done.exit_code == 0, done.output
    text = " ".join(done.output.split())
    assert "wait for its IP → mark it provisioned, VMs in parallel" in text
    # no line of the prose stops far short of the width (the ragged breaks of before)
    prose = done.output.split("╭")[0].splitlines()
    short = [line for line, nxt in itertools.pairwise(prose)
             if line.strip() and nxt.strip() and len(line.rstrip()) < 40]
    assert short == [], short


def test_no_command_offers_shell_completion_options() -> None:
    # hopnhat installs no completion; a command made from a lone function (retire, maintain,
    # summary…) listed typer's --install-completion / --show-completion in its --help
    commands = _commands(typer.main.get_command(app))
    offered = [path for path, command in commands
               if any("completion" in name for param in command.params
                      for name in getattr(param, "opts", ()))]
    assert offered == []
