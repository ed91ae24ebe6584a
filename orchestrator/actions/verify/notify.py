"""Who hears of a verification: a healthchecks-style URL pinged on start, success and
failure (``verification.notify_url`` or ``--notify-url``), and people, through the
estate's notification routes (:mod:`orchestrator.actions.notifications`):

- ``attack_suspected`` — a check that notices an attack failed (future, foreign, vanished,
  deletions);
- ``backup_stale`` — a host's latest snapshot is older than the tier's RPO (freshness);
- ``verify_failed`` — any other check failed or could not run, or verify could not run.

Each problem goes to one event, so a channel routed several of them hears of it once. A
notification that fails is logged and returned, never raised: it does not turn a good
verification into a failure. Messages carry no secret (the URL's host only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from orchestrator.actions.notifications import tell
from orchestrator.actions.verify.run import VerifyResult
from orchestrator.adapters.healthchecks import ping_url
from orchestrator.adapters.notify import Sent
from orchestrator.estate.model import SecretRef, VerificationSettings
from orchestrator.estate.secrets import Secrets
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from orchestrator.verdicts import DELETIONS, FOREIGN, FRESHNESS, FUTURE, VANISHED

log = logging.getLogger("hopnhat.verify")

START, SUCCESS, FAILURE = "start", "success", "failure"
VERIFY_FAILED, BACKUP_STALE, ATTACK_SUSPECTED = (
    "verify_failed", "backup_stale", "attack_suspected")
ATTACK_CHECKS = (FUTURE, FOREIGN, VANISHED, DELETIONS)


def summary_text(result: VerifyResult) -> str:
    """A few lines for a person: the verdict, then each repository that is not ok and the
    checks that say why."""
    bad = [r for r in result.reports if r.verdict != "ok"]
    lines = [f"hopnhat verify of estate {result.estate}: {result.status} — "
             f"{len(result.reports) - len(bad)} of {len(result.reports)} repositories ok "
             f"(run {result.run_id})"]
    for report in bad:
        for check in report.checks:
            if not check.passed:
                lines.append(f"{report.target.key} {check.name} {check.status}: "
                             f"{check.message}")
    return "\n".join(lines) + "\n"


def event_of(check: str) -> str:
    """The event a failed check ``check`` is told as."""
    if check in ATTACK_CHECKS:
        return ATTACK_SUSPECTED
    return BACKUP_STALE if check == FRESHNESS else VERIFY_FAILED


def problems(result: VerifyResult) -> dict[str, list[str]]:
    """Each event's lines (one a failed check: ``system@host check status: message``), in
    the order of the repositories and their checks; events with none left out."""
    found: dict[str, list[str]] = {}
    for report in result.reports:
        for check in report.checks:
            if not check.passed:
                found.setdefault(event_of(check.name), []).append(
                    f"{report.target.key} {check.name} {check.status}: {check.message}")
    return found


@dataclass
class Notifier:
    """The ping URL of one run (or None) and, once the estate is loaded, its ``paths``
    (whose ``notifications:`` route the events)."""

    url: str | None = None
    estate: str = ""
    paths: Paths | None = None
    secrets: Secrets | None = None
    sent: list[Sent] = field(default_factory=list)

    @classmethod
    def configured(cls, settings: VerificationSettings, secrets: Secrets | None, *,
                   url: str | None = None, paths: Paths | None = None,
                   estate: str = "") -> Notifier:
        """The ``url`` given over the estate's ``verification.notify_url``; a
        ``{vault: key}`` URL is read from the vault (SecretError if it cannot be)."""
        chosen_url = url
        if chosen_url is None:
            configured = settings.notify_url
            if isinstance(configured, SecretRef):
                chosen_url = secrets.get(configured) if secrets else None
            else:
                chosen_url = configured
        return cls(chosen_url, estate, paths, secrets)

    def _ping(self, event: str, body: str) -> None:
        if not self.url:
            return
        done = ping_url(self.url, event, body)
        if not done.ok:
            log.warning("ping of %s (%s) failed: %s", done.target, event, done.error)
        self.sent.append(done)

    def _tell(self, event: str, lines: list[str], run_id: str | None,
              ledger: Ledger | None) -> None:
        if self.paths is not None:
            self.sent.extend(tell(self.paths, event, lines, run_id=run_id, ledger=ledger,
                                  secrets=self.secrets))

    def start(self, run_id: str, repositories: int) -> None:
        self._ping(START, f"hopnhat verify of estate {self.estate}: checking {repositories} "
                   f"repositories (run {run_id})\n")

    def finish(self, result: VerifyResult, ledger: Ledger | None = None) -> None:
        """Ping success or failure; tell each event's channels of its problems (recorded
        as events of the run in ``ledger`` when given)."""
        self._ping(SUCCESS if result.exit_code == 0 else FAILURE, summary_text(result))
        for event, lines in problems(result).items():
            self._tell(event, lines, result.run_id, ledger)

    def could_not_run(self, message: str, exit_code: int) -> None:
        self._ping(FAILURE, f"hopnhat verify could not run: {message}\n")
        self._tell(VERIFY_FAILED, [f"hopnhat verify could not run (exit {exit_code}): "
                                   f"{message}"], None, None)
