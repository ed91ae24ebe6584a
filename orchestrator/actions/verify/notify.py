"""Who hears of a verification: a command and/or a healthchecks-style URL, told on start,
success and failure. A notification that fails is logged and returned, never raised: it does
not turn a good verification into a failure. Messages carry no secret (the URL's host only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from orchestrator.actions.verify.run import VerifyResult
from orchestrator.adapters.notify import Notified, ping_url, run_command
from orchestrator.estate.model import SecretRef, VerificationSettings
from orchestrator.estate.secrets import Secrets

log = logging.getLogger("hopnhat.verify")

START, SUCCESS, FAILURE = "start", "success", "failure"


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


@dataclass
class Notifier:
    """The hooks of one run: ``command`` and ``url`` (either may be None)."""

    command: str | None = None
    url: str | None = None
    estate: str = ""
    sent: list[Notified] = field(default_factory=list)

    @classmethod
    def configured(cls, settings: VerificationSettings, secrets: Secrets | None, *,
                   command: str | None = None, url: str | None = None,
                   estate: str = "") -> Notifier:
        """The options given (``command``, ``url``) over the estate's ``verification:``
        settings; a ``{vault: key}`` URL is read from the vault (SecretError if it cannot
        be)."""
        chosen_url = url
        if chosen_url is None:
            configured = settings.notify_url
            if isinstance(configured, SecretRef):
                chosen_url = secrets.get(configured) if secrets else None
            else:
                chosen_url = configured
        return cls(command or settings.notify_command, chosen_url, estate)

    def _send(self, event: str, body: str, env: dict[str, str]) -> None:
        results = []
        if self.url:
            results.append(ping_url(self.url, event, body))
        if self.command:
            results.append(run_command(self.command, event, body,
                                       env={"HOPNHAT_ESTATE": self.estate, **env}))
        for done in results:
            if not done.ok:
                log.warning("notification by %s %s (%s) failed: %s", done.channel, done.target,
                            event, done.error)
        self.sent.extend(results)

    def start(self, run_id: str, repositories: int) -> None:
        self._send(START, f"hopnhat verify of estate {self.estate}: checking {repositories} "
                   f"repositories (run {run_id})\n", {"HOPNHAT_RUN_ID": run_id})

    def finish(self, result: VerifyResult) -> None:
        self._send(SUCCESS if result.exit_code == 0 else FAILURE, summary_text(result),
                   {"HOPNHAT_RUN_ID": result.run_id,
                    "HOPNHAT_EXIT_CODE": str(result.exit_code)})

    def could_not_run(self, message: str, exit_code: int) -> None:
        self._send(FAILURE, f"hopnhat verify could not run: {message}\n",
                   {"HOPNHAT_EXIT_CODE": str(exit_code)})
