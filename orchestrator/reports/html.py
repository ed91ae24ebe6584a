"""What every HTML report and page has in common: one Jinja2 environment over hopnhat's
templates (autoescaped, strict: a name the template lacks is an error, not a blank), and the
words of a report in Vietnamese or English (``--lang vi|en``).

A report's words are a table of rows ``label → (English, Vietnamese)``, one row a label, so
that no language can lack one; :func:`words` picks a language's column.

A report names a system once, by :func:`system_title` (``Quản lý văn bản và điều hành
(QLVB)``); its times are in the estate's time zone with the offset written
(:func:`orchestrator.human.local_time`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from orchestrator.errors import EXIT_BAD_INPUT, HopnhatError
from orchestrator.human import duration
from orchestrator.resources import templates_dir

LANGS = ("vi", "en")


def words(lang: str, table: Mapping[str, tuple[str, str]]) -> dict[str, str]:
    """The words of ``table`` (rows of (English, Vietnamese)) in ``lang``. Raises
    HopnhatError (exit 2) for a language other than vi and en."""
    if lang not in LANGS:
        raise HopnhatError(f"--lang {lang!r}: choose one of {', '.join(LANGS)}",
                           exit_code=EXIT_BAD_INPUT)
    column = 0 if lang == "en" else 1
    return {key: row[column] for key, row in table.items()}


def system_title(name: str, code: str) -> str:
    """A system as a report's title or table names it: its name and its code in capitals in
    brackets — the name alone when it already ends with that code in brackets (the estate's
    ``Quản lý văn bản và điều hành (QLVB)``, code ``qlvb``), so that the code is not written
    twice."""
    name, tag = name.strip(), f"({code.upper()})"
    if not name:
        return tag
    return name if name.upper().endswith(tag) else f"{name} {tag}"


@cache
def environment() -> Environment:
    """The Jinja2 environment of hopnhat's HTML templates; its filter ``human`` writes
    seconds as :func:`orchestrator.human.duration` does in words (``—`` for none); its
    global ``system_title`` is :func:`system_title`."""
    env = Environment(loader=FileSystemLoader(str(templates_dir())),
                      autoescape=select_autoescape(["html", "j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["human"] = lambda v: duration(None if v is None else float(v), missing="—")
    env.globals["system_title"] = system_title
    return env


def render(template: str, **values: Any) -> str:
    """The text of ``template`` (a file of ``templates/``) filled with ``values``."""
    return environment().get_template(template).render(**values)
