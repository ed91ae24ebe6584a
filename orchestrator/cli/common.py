"""What every command shares: global options, loading the estate, output, errors."""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import typer
import typer.main
from rich.console import Console
from rich.markup import escape
from rich.segment import Segment
from rich.style import Style
from typer.core import TyperGroup

from orchestrator.errors import HopnhatError
from orchestrator.quoting import terminal

if TYPE_CHECKING:
    from orchestrator.adapters.notify import Sent
    from orchestrator.estate import Estate
    from orchestrator.settings import Paths

class SafeConsole(Console):
    """A rich console that cannot be driven by what it prints: the text of every segment
    (not rich's own styles and cursor controls) has its control characters written visibly
    (:func:`orchestrator.quoting.terminal`), whichever call printed it — a table cell, a
    tree label, a message. Line feeds and tabs stay."""

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(
            Segment(terminal(text, None, lines=True), _safe_style(style), control)
            if text and not control else Segment(text, style, control)
            for text, style, control in buffer)


def _safe_style(style: Style | None) -> Style | None:
    """``style`` without a link that holds a control character (a link is written into the
    terminal's own escape sequence: markup in foreign text could end it early)."""
    if style is None or not style.link or terminal(style.link, None) == style.link:
        return style
    return style + Style(link=terminal(style.link, 2000))


err_console = SafeConsole(stderr=True, highlight=False)
console = SafeConsole(highlight=False)

JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON document for machines.")]
#: ``--metrics FILE``: where a nightly job writes its Prometheus textfile
MetricsOption = Annotated[Path | None, typer.Option(
    "--metrics", help="Write a Prometheus textfile here (for node_exporter's textfile "
    "collector).")]


@dataclass
class Context:
    """Global options, and the estate loaded on first use."""

    estate_dir: Path
    state_dir: Path
    json: bool = False
    verbose: int = 0

    @cached_property
    def declared(self) -> Estate:
        """The estate as its files declare it."""
        from orchestrator.adapters.systemd import calendar_problems
        from orchestrator.estate import load_estate

        return load_estate(self.estate_dir, calendar=calendar_problems)

    @cached_property
    def estate(self) -> Estate:
        """The estate as it stands: its files, less what ``retire`` closed (the ledger)."""
        from orchestrator.actions.retire.state import load
        from orchestrator.settings import Paths

        return load(self.declared, Paths(self.state_dir, self.declared).ledger)

    @cached_property
    def paths(self) -> Paths:
        from orchestrator.settings import Paths

        return Paths(self.state_dir, self.estate)


def context(ctx: typer.Context) -> Context:
    obj = ctx.find_root().obj
    assert isinstance(obj, Context), "the root callback sets the context"
    return obj


def want_json(ctx: typer.Context, local: bool) -> bool:
    return local or context(ctx).json


def shown(text: str, limit: int | None = 300) -> str:
    """Text that came from a host or a repository, made safe for the terminal: control
    characters (escape sequences included) written as ``\\xNN``, cut to ``limit``, rich
    markup escaped."""
    return escape(terminal(text, limit))


#: what JSON may carry raw but a terminal may obey: C1 controls (CSI is \x9b), DEL, bidi
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def print_json(data: Any) -> None:
    """Machine output on stdout: one JSON document (C0 controls escaped by JSON itself; C1
    and bidirectional controls escaped too, so a terminal showing it obeys none)."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write(_JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text) + "\n")


def warn_unsent(sent: Iterable[Sent]) -> None:
    """A warning on stderr for each notification (an ``adapters.notify.Sent``) that failed:
    the run goes on, and says which channel did not hear of it and why."""
    for one in sent:
        if not one.ok:
            err_console.print(f"[yellow]warning:[/] notification ({one.event}) by "
                              f"{escape(one.channel)} {escape(one.target)} failed: "
                              f"{escape(one.error or '')}", soft_wrap=True)


class SafeFormatter(logging.Formatter):
    """Log lines on a terminal: what a host, a repository or a notifier said (and logs
    quote) has its control characters written visibly, line breaks kept."""

    def format(self, record: logging.LogRecord) -> str:
        return terminal(super().format(record), None, lines=True)


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    # pyVmomi and paramiko log request bodies at DEBUG; keep them out even at -vv
    for noisy in ("pyVmomi", "paramiko", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s")


def reflow(text: str | None) -> str | None:
    """A command's help as paragraphs: the docstring's line breaks inside a paragraph
    joined (Typer keeps them, and the terminal then wraps each line again, raggedly);
    paragraphs that are lists or indented, or start with ``\\b``, are kept as written."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    out = []
    for paragraph in paragraphs:
        lines = paragraph.splitlines()
        verbatim = paragraph.startswith("\b") or any(
            _LIST_ITEM.match(line) or line.startswith(" ") for line in lines)
        out.append(paragraph if verbatim else " ".join(line.strip() for line in lines))
    return "\n\n".join(out)


def _reflow_tree(command: Any) -> None:
    command.help = reflow(command.help)
    for sub in getattr(command, "commands", {}).values():
        _reflow_tree(sub)


def load_command(name: str, module: str, attribute: str) -> Any:
    """The click command ``name`` made from ``module.attribute``: a Typer app (a group of
    commands) or a command function; its help reflowed (:func:`reflow`)."""
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        command: Any = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    _reflow_tree(command)
    return command


class HandledGroup(TyperGroup):
    """Root group: an expected failure becomes a short message and its exit code — no
    traceback, no locals, nothing secret. Every command's help is reflowed (:func:`reflow`).

    ``lazy`` names the commands made when first asked for, by :func:`load_command`:
    name → (module, attribute)."""

    lazy: ClassVar[dict[str, tuple[str, str]]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _reflow_tree(self)

    def list_commands(self, ctx: Any) -> list[str]:
        return [*self.commands, *(name for name in self.lazy if name not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.commands[cmd_name] = load_command(cmd_name, *self.lazy[cmd_name])
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.lazy and not args[0].startswith("-"):
            for name in self.lazy:  # a typo: "did you mean …" draws on every command
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except HopnhatError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

