"""Quoting for each place a value from the estate, a host or a repository lands: one
function per target, so that no caller invents its own.

- :func:`terminal`: text printed for people (control characters and escape sequences
  written visibly, cut to a length);
- :func:`shell` / :func:`shell_join`: a POSIX shell word / command line (a remote command
  over SSH);
- :func:`ssh_option`: one ``-o Name=value`` option for ssh (which splits a value at blanks
  and expands ``%`` tokens in it);
- :func:`unit_word`, :func:`unit_exec_word`, :func:`unit_path`, :func:`unit_text`: a systemd
  unit file's command-line words, paths and free text (specifiers, ``$``, line breaks);
- :func:`ansible_value`: a value handed to Ansible (inventory, extra vars), marked unsafe so
  that Ansible never evaluates ``{{ … }}`` written in it;
- :func:`prometheus_label`: a label value in Prometheus's text exposition format (the
  textfiles of verify, maintain, the vault pull and the host's backup job).

Pure functions, no I/O: the bottom layer, importable from anywhere.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

#: C0 and C1 control characters, DEL included: what a terminal may take as a command
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: the same, less tab and line feed (text of several lines that hopnhat lays out itself)
CONTROL_BUT_LAYOUT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: unicode's bidirectional controls: they reorder what a terminal shows ("Trojan Source")
BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal(text: object, limit: int | None = 300, *, lines: bool = False) -> str:
    """``text`` (from the estate, a host, a repository) made safe to print: control
    characters (escape sequences included) and bidirectional controls written as ``\\xNN``
    / ``\\uNNNN``; cut to ``limit`` characters with ``…`` (None: no cut). ``lines`` keeps
    line feeds and tabs (a message hopnhat laid out over several lines)."""
    out = str(text)
    if limit is not None and len(out) > limit:
        out = out[:limit] + "…"
    out = (CONTROL_BUT_LAYOUT if lines else CONTROL).sub(_visible, out)
    return BIDI.sub(_visible, out)


def shell(value: object) -> str:
    """One word for a POSIX shell (``sh -c`` on a host over SSH)."""
    return shlex.quote(str(value))


def shell_join(argv: Iterable[object]) -> str:
    """A command line for a POSIX shell: every word quoted."""
    return shlex.join(str(a) for a in argv)


def ssh_option(name: str, value: object) -> str:
    """``Name="value"`` for ``ssh -o``: ssh splits an option's value at blanks (double
    quotes keep it whole) and expands ``%`` tokens (doubled here). A value holding a double
    quote or a control character cannot be written so: ValueError."""
    if not re.fullmatch(r"[A-Za-z]+", name):
        raise ValueError(f"not an ssh option name: {terminal(name, 60)}")
    text = str(value)
    if '"' in text or CONTROL.search(text):
        raise ValueError(f"{name}: an ssh option cannot hold a double quote or a control "
                         f"character ({terminal(text, 80)})")
    return f'{name}="{text.replace("%", "%%")}"'


_UNIT_QUOTE = re.compile(r"[\s\"'\\;]")


def _unit_line(value: object, what: str) -> str:
    text = str(value)
    if CONTROL.search(text):
        raise ValueError(f"{what} cannot hold a control character or a line break "
                         f"({terminal(text, 80)}): it would end the unit file's line")
    return text


def unit_word(value: object) -> str:
    """One word of a unit file's command line or assignment: ``%`` doubled (specifiers),
    double-quoted with C escapes when it holds blanks, quotes, backslashes or ``;``. A line
    break cannot be written in a unit file's word: ValueError."""
    text = _unit_line(value, "a unit file's word").replace("%", "%%")
    if not _UNIT_QUOTE.search(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unit_exec_word(value: object) -> str:
    """:func:`unit_word` for ``ExecStart=``, where ``$`` also expands (so doubled)."""
    return unit_word(str(value).replace("$", "$$"))


def unit_path(value: object) -> str:
    """A path setting (``WorkingDirectory=``…): specifiers escaped, taken as it is."""
    return _unit_line(value, "a unit file's path").replace("%", "%%")


def unit_text(value: object) -> str:
    """Free text for ``Description=`` or a comment: one line (control characters written
    visibly), specifiers escaped."""
    return terminal(value, 200).replace("%", "%%")


#: the key Ansible's JSON and YAML loaders read as "this string is unsafe: never template it"
ANSIBLE_UNSAFE = "__ansible_unsafe"


def ansible_value(value: Any) -> Any:
    """``value`` (a mapping, list, string, number…) for Ansible's inventory or extra vars,
    every string marked unsafe: Ansible then never evaluates a ``{{ … }}`` or ``{% … %}``
    written in it (a system name is text, not a template). Mapping keys stay as they are
    (Ansible does not template keys)."""
    if isinstance(value, str | os.PathLike):
        return {ANSIBLE_UNSAFE: os.fspath(value)}
    if isinstance(value, Mapping):
        return {k: ansible_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [ansible_value(v) for v in value]
    return value


def prometheus_label(value: object) -> str:
    """A label value for Prometheus's text exposition format, without its double quotes:
    backslash, double quote and line feed escaped (``\\\\``, ``\\"``, ``\\n``), the only
    three the format escapes."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
