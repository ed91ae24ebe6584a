"""What the textfiles of a pass the control host makes over the estate's repositories — a
maintenance pass (:mod:`orchestrator.reports.maintain_metrics`), a vault pull
(:mod:`orchestrator.reports.vault_metrics`) — read of its result: when it started, how it
exited, and per system its repository and status. Each textfile adds what it reads besides.

Protocols, because reports may not import actions (the layers: ``[tool.importlinter]`` in
pyproject.toml): the actions' dataclasses satisfy them without naming them, and mypy checks
that they do where the CLI hands a result to a renderer. Every member is a read-only
property, so a frozen dataclass's field fits it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar


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
