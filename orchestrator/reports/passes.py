"""The textfile of a pass the control host makes over the estate's repositories — a
maintenance pass (:mod:`orchestrator.reports.maintain_metrics`), a vault pull
(:mod:`orchestrator.reports.vault_metrics`) — written once (:class:`Textfile`): per system
when it last succeeded (carried from the ledger for one that failed this time, so a system
that keeps failing still ages into an alert) and what the pass counted of it, then when the
pass started and how it exited. Each textfile names its gauges and says how it reads an
outcome (its labels, its key among the last successes, its count).

What it reads of a pass's result: when it started, how it exited, and per system its
repository and status (the protocols below); each textfile adds what it reads besides.

Protocols, because reports may not import actions (the layers: ``[tool.importlinter]`` in
pyproject.toml): the actions' dataclasses satisfy them without naming them, and mypy checks
that they do where the CLI hands a result to a renderer. Every member is a read-only
property, so a frozen dataclass's field fits it too.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from orchestrator.reports.metrics import gauges
from orchestrator.verdicts import OK, SKIPPED


class Target(Protocol):
    """One system's repository that the pass worked on."""

    @property
    def system(self) -> str: ...

    @property
    def repository(self) -> str:
        """The repository host."""


class Outcome(Protocol):
    """What the pass did to one system's repository."""

    @property
    def target(self) -> Target: ...

    @property
    def status(self) -> str:
        """ok, failed or skipped (:mod:`orchestrator.verdicts`)."""


O_co = TypeVar("O_co", bound=Outcome, covariant=True)


class Pass(Protocol[O_co]):
    """The pass: when it started (seconds since the epoch), how it exited, and what it did
    to each repository."""

    @property
    def started(self) -> float: ...

    @property
    def exit_code(self) -> int: ...

    @property
    def outcomes(self) -> Sequence[O_co]: ...


Done = TypeVar("Done", bound=Outcome)
K = TypeVar("K", bound=Hashable)
#: a gauge: its name, its help text
Gauge = tuple[str, str]


@dataclass(frozen=True)
class Textfile(Generic[Done, K]):
    """A pass's textfile: its four gauges — when a system last succeeded, what the pass
    counted of a system it did, when the pass started, its exit code — and how it reads an
    outcome: its ``labels``, its ``key`` among the last successes, its ``count``."""

    last_success: Gauge
    counted: Gauge
    last_run: Gauge
    exit_code: Gauge
    labels: Callable[[Done], dict[str, str]]
    key: Callable[[Done], K]
    count: Callable[[Done], int]

    def render(self, estate: str, result: Pass[Done], last_success: Mapping[K, float], *,
               changed: bool = True) -> str:
        """``last_success``: each key → when it last succeeded before this pass. A system
        skipped is left out; one ok succeeded at the pass's start, unless the pass
        ``changed`` nothing (a dry run): then, like one that failed, it carries its last
        success, and nothing is counted."""
        help_texts = dict((self.last_success, self.counted, self.last_run, self.exit_code))
        series: dict[str, list[tuple[Mapping[str, str], float]]] = {
            name: [] for name in help_texts}
        for outcome in result.outcomes:
            if outcome.status == SKIPPED:
                continue
            labels = self.labels(outcome)
            done = changed and outcome.status == OK
            when = result.started if done else last_success.get(self.key(outcome))
            if when is not None:
                series[self.last_success[0]].append((labels, when))
            if done:
                series[self.counted[0]].append((labels, float(self.count(outcome))))
        run = {"estate": estate}
        series[self.last_run[0]].append((run, result.started))
        series[self.exit_code[0]].append((run, float(result.exit_code)))
        return gauges(help_texts, series)
