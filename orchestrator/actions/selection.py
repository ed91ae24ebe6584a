"""Selectors: the systems, sites and hosts an operator names on the command line
(``--system``, ``--site``, ``--to``, ``--host``), checked against the estate before anything
is touched.

One check for every command, so a typo is refused the same way everywhere (exit 2, the
unknown value named, the closest known names offered) instead of selecting nothing and
succeeding.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from orchestrator.errors import EXIT_BAD_INPUT, PlanError

if TYPE_CHECKING:
    from orchestrator.estate import Estate

_LISTED = 30  # beyond this many known names, the rest are counted
_VALUE_MAX = 80  # a value longer than this is cut when shown


def _shown(value: str) -> str:
    """``'value'``, safe for a terminal: ``repr`` writes control characters (escape
    sequences, line breaks) as escapes; a long value is cut."""
    return repr(value if len(value) <= _VALUE_MAX else value[:_VALUE_MAX] + "…")


def unknown_message(kind: str, value: str, known: Iterable[str]) -> str:
    """``no system 'qvlb' in the estate: did you mean 'qlvb'? (systems: …)``."""
    names = sorted(set(known))
    close = difflib.get_close_matches(value, names, n=3, cutoff=0.6)
    text = f"no {kind} {_shown(value)} in the estate"
    if close:
        text += f": did you mean {' or '.join(map(_shown, close))}?"
    listed = ", ".join(names[:_LISTED]) or "none"
    if len(names) > _LISTED:
        listed += f", … ({len(names) - _LISTED} more)"
    return f"{text} ({kind}s: {listed})"


def hosts_of(estate: Estate) -> set[str]:
    """Every host name the estate's files give: its VMs and the ones migrations build."""
    return {vm.name for vm in (*estate.vms, *estate.targets)}


def require_known(estate: Estate, *, systems: Sequence[str] = (), sites: Sequence[str] = (),
                  hosts: Sequence[str] = ()) -> None:
    """Raise PlanError (exit 2) naming every value among ``systems``, ``sites`` and
    ``hosts`` that the estate does not have, each with the closest known names; return
    quietly when all are known."""
    problems = [unknown_message("system", s, estate.systems)
                for s in dict.fromkeys(systems) if s not in estate.systems]
    problems += [unknown_message("site", s, estate.sites)
                 for s in dict.fromkeys(sites) if s not in estate.sites]
    if hosts:
        known = hosts_of(estate)
        problems += [unknown_message("host", h, known)
                     for h in dict.fromkeys(hosts) if h not in known]
    if problems:
        raise PlanError("; ".join(problems), exit_code=EXIT_BAD_INPUT)
