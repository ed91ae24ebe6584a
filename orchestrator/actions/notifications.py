"""Telling people of an event: the estate's routes pick the channels
(``notifications.routes``), the vault gives their URLs, the Apprise adapter sends
(:func:`orchestrator.adapters.notify.send`). What each channel made of it comes back as
data, goes to the log when it failed and, given a ledger and a run, into that run's events
(``notification``): a channel that fails never fails the run, and it is seen.

Each caller is one line: ``tell(paths, "drill_failed", lines, ledger=…, run_id=…)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from orchestrator.adapters.notify import Sent, send
from orchestrator.errors import HopnhatError
from orchestrator.estate.secrets import Secrets
from orchestrator.human import duration, local_time
from orchestrator.ledger import Ledger
from orchestrator.reports.notices import notice_body, notice_title, overdue_line
from orchestrator.settings import Paths

if TYPE_CHECKING:
    from orchestrator.actions.backup.status import StatusReport

log = logging.getLogger("hopnhat.notify")


def channel_urls(paths: Paths, names: Sequence[str], secrets: Secrets
                 ) -> tuple[dict[str, str], list[Sent]]:
    """The URL of each channel of ``names`` from the vault, and a failed :class:`Sent`
    for each whose URL cannot be read (the vault's error says which key, never a value)."""
    channels = paths.estate.settings.notifications.channels
    urls: dict[str, str] = {}
    unread: list[Sent] = []
    for name in names:
        try:
            urls[name] = secrets.get(channels[name].url)
        except HopnhatError as exc:
            unread.append(Sent(name, "?://…", "", False, str(exc)))
    return urls, unread


def send_to(paths: Paths, event: str, names: Sequence[str], title: str, body: str, *,
            html: str | None = None, attachments: Sequence[Path] = (),
            secrets: Secrets | None = None, ledger: Ledger | None = None,
            run_id: str | None = None) -> tuple[Sent, ...]:
    """Send ``title`` and ``body`` (``html`` for the channels that show it) to channels
    ``names`` as ``event``; each outcome recorded as an event of ``run_id`` in ``ledger``
    when both are given. Never raises for a channel."""
    if not names:
        return ()
    urls, unread = channel_urls(paths, names, secrets or Secrets(paths))
    timeout = paths.estate.settings.notifications.timeout.total_seconds()
    sent = {s.channel: s for s in send(urls, event, title, body, html=html,
                                       attachments=attachments, timeout=timeout)}
    for failed in unread:
        sent[failed.channel] = Sent(failed.channel, failed.target, event, False, failed.error)
        log.warning("notification of %s by channel %s failed: %s", event, failed.channel,
                    failed.error)
    ordered = tuple(sent[name] for name in names)
    if ledger is not None and run_id is not None:
        for one in ordered:
            ledger.event(run_id, one.channel, "notification", **one.as_dict())
    return ordered


def tell(paths: Paths, event: str, lines: Sequence[str], *, run_id: str | None = None,
         ledger: Ledger | None = None, secrets: Secrets | None = None) -> tuple[Sent, ...]:
    """Tell the channels routed ``event`` (none: nothing is sent) of ``lines``, in the
    estate's ``notifications.lang``, naming ``run_id``; see :func:`send_to`."""
    settings = paths.estate.settings.notifications
    names = settings.routed(event)
    if not names or not lines:
        return ()
    title = notice_title(settings.lang, event, paths.estate.settings.name or paths.estate.id)
    return send_to(paths, event, names, title, notice_body(settings.lang, lines, run_id),
                   secrets=secrets, ledger=ledger, run_id=run_id)


class EndedDrill(Protocol):
    """A drill as :func:`tell_drill_failed` reads it (a ``DrillResult``)."""

    @property
    def system(self) -> str: ...

    @property
    def drill_id(self) -> str: ...

    @property
    def verdict(self) -> str: ...

    @property
    def reasons(self) -> Sequence[str]: ...

    @property
    def failed_step(self) -> str: ...

    @property
    def html(self) -> str: ...


class DueDrill(Protocol):
    """A row of ``drill due`` as :func:`tell_overdue` reads it."""

    @property
    def system(self) -> str: ...

    @property
    def tier(self) -> int: ...

    @property
    def last_passed(self) -> str | None: ...

    @property
    def interval_seconds(self) -> float: ...

    @property
    def overdue(self) -> bool: ...


def tell_drill_failed(paths: Paths, drill: EndedDrill, ledger: Ledger | None = None
                      ) -> tuple[Sent, ...]:
    """``drill_failed`` of ``drill`` when it failed (a drill stopped by the operator, or
    passed, tells no one), recorded in its own run's events."""
    if drill.verdict != "failed":
        return ()
    why = "; ".join(drill.reasons) or f"step {drill.failed_step}"
    lines = [f"{drill.system}: {why}", *([drill.html] if drill.html else [])]
    return tell(paths, "drill_failed", lines, run_id=drill.drill_id, ledger=ledger)


def tell_overdue(paths: Paths, rows: Sequence[DueDrill]) -> tuple[Sent, ...]:
    """``drill_overdue`` of the systems of ``rows`` that are overdue (none: no one told)."""
    settings = paths.estate.settings
    lines = [overdue_line(settings.notifications.lang, r.system, r.tier,
                          local_time(r.last_passed, settings.timezone, missing=""),
                          duration(r.interval_seconds)) for r in rows if r.overdue]
    return tell(paths, "drill_overdue", lines)


class NightOutcome(Protocol):
    """One system's outcome of ``drill nightly`` as :class:`NightlyNotices` reads it."""

    @property
    def system(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def reason(self) -> str: ...

    @property
    def drill_id(self) -> str: ...

    @property
    def html(self) -> str: ...


@dataclass
class NightlyNotices:
    """The hooks of ``drill nightly`` (its ``NightlyHooks``) that tell people: each drill
    that failed as it ends (``drill_failed``, in its run's events), the systems overdue
    once the night is over (``drill_overdue``). What was sent is kept in ``sent``."""

    paths: Paths
    ledger: Ledger | None = None
    sent: list[Sent] = field(default_factory=list)

    def drill_failed(self, outcome: NightOutcome) -> None:
        if outcome.status != "failed":
            return
        lines = [f"{outcome.system}: {outcome.reason or 'failed'}",
                 *([outcome.html] if outcome.html else [])]
        self.sent.extend(tell(self.paths, "drill_failed", lines,
                              run_id=outcome.drill_id or None, ledger=self.ledger))

    def overdue(self, rows: Sequence[DueDrill]) -> None:
        self.sent.extend(tell_overdue(self.paths, rows))

    def finished(self, result: object) -> None:
        del result  # the night's own result: its textfile and JUnit tell of it


def tell_stale_backups(paths: Paths, report: StatusReport) -> tuple[Sent, ...]:
    """``backup_stale`` of each host whose latest snapshot ``backup status`` found older than
    its tier's RPO, or missing (none stale: no one told)."""
    from orchestrator.actions.backup.status import STALE  # SSH and restic: only for status

    zone = paths.estate.settings.timezone
    lines = [f"{s.system} {h.host}: {h.freshness} — {local_time(h.snapshot_time, zone)} "
             f"({duration(h.age_seconds)} / RPO {duration(s.rpo_seconds)})"
             for s in report.systems for h in s.hosts if h.freshness == STALE]
    return tell(paths, "backup_stale", lines)


def failed_channels(sent: Sequence[Sent]) -> list[str]:
    """``name (scheme): reason`` of each channel that failed, for a run's output."""
    return [f"{s.channel} ({s.target}): {s.error}" for s in sent if not s.ok]

