"""What the reports of a verification (:mod:`orchestrator.reports.junit`,
:mod:`orchestrator.reports.metrics`) read of its result: the attributes of
``actions.verify.run.VerifyResult``, its repositories' reports, their targets, checks and
hosts that they render, as protocols of the same names.

Reports may not import actions (the layers: ``[tool.importlinter]`` in pyproject.toml). The
actions' dataclasses satisfy these protocols without naming them, and mypy checks that they
do wherever a result is handed to a renderer (``actions/verify/flow.py``, the tests). Every
member is a read-only property, so a frozen dataclass's field fits it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol


class Target(Protocol):
    """The repository verified and what it was judged against."""

    @property
    def key(self) -> str:
        """``system@repository-host``."""

    @property
    def system(self) -> str: ...

    @property
    def tier(self) -> int: ...

    @property
    def repository(self) -> str:
        """The repository host."""

    @property
    def copy(self) -> str | None:
        """The host of the repository's second copy (None: it has none)."""

    @property
    def rpo(self) -> timedelta: ...

    @property
    def subset(self) -> str | None:
        """restic's ``--read-data-subset`` this run (None: no data read)."""

    @property
    def position(self) -> int | None:
        """With ``--read-data-subset auto``: the rotation's subset read this run."""

    @property
    def rotation(self) -> int:
        """The rotation's length in runs."""

    @property
    def quota_bytes(self) -> int | None: ...


class Check(Protocol):
    """One check of the repository: its name and status (:mod:`orchestrator.verdicts`), a
    message for people and details for machines."""

    @property
    def name(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def message(self) -> str: ...

    @property
    def details(self) -> Mapping[str, Any]: ...

    @property
    def passed(self) -> bool:
        """Ok or skipped."""


class HostState(Protocol):
    """The latest snapshot of one host in the repository (None: not known)."""

    @property
    def host(self) -> str: ...

    @property
    def latest_time(self) -> datetime | None: ...

    @property
    def age_seconds(self) -> float | None: ...

    @property
    def bytes(self) -> int | None: ...

    @property
    def files(self) -> int | None: ...


class RepositoryReport(Protocol):
    """What the verification found in one repository."""

    @property
    def target(self) -> Target: ...

    @property
    def checks(self) -> Sequence[Check]:
        """Every check, in the order of :data:`orchestrator.verdicts.CHECKS`."""

    @property
    def hosts(self) -> Sequence[HostState]: ...

    @property
    def snapshots(self) -> int: ...

    @property
    def duration_seconds(self) -> float: ...

    @property
    def used_bytes(self) -> int | None:
        """A rest repository's bytes as its server counts them against the quota."""

    @property
    def verdict(self) -> str:
        """The worst of the checks' statuses."""

    def check(self, name: str) -> Check:
        """The check named ``name``."""


class VerifyResult(Protocol):
    """One verification: when, how long, how it exited and each repository's report."""

    @property
    def run_id(self) -> str: ...

    @property
    def estate(self) -> str: ...

    @property
    def started(self) -> datetime: ...

    @property
    def duration_seconds(self) -> float: ...

    @property
    def exit_code(self) -> int: ...

    @property
    def reports(self) -> Sequence[RepositoryReport]: ...
