"""Run a maintenance pass: per repository, forget by the keep-within policy and prune through
the host's maintenance endpoint, every removal recorded in the ledger before and after.

Before the real ``forget --prune``, a ``--dry-run`` names what the policy removes and those
IDs are recorded (``snapshot_log.record_removed``), so a pass that dies half-way leaves no
removal of its own unexplained to ``verify``'s vanished check; what the real run removed is
recorded again after it (a backup landing in between can change the set). Locks are waited
for (``verification.lock_wait``), stale ones removed, a live owner's never.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.actions import passes
from orchestrator.actions.maintain.plan import Target, describe
from orchestrator.actions.repositories import open_repository
from orchestrator.actions.snapshot_log import record_removed
from orchestrator.adapters.restic import Restic
from orchestrator.estate.model import SecretRef
from orchestrator.estate.secrets import Secrets
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from orchestrator.verdicts import FAILED, OK, SKIPPED

KIND = "maintain"  # the ledger's kind of run


@dataclass
class Outcome:
    """What the pass did to one repository."""

    target: Target
    status: str
    removed: list[str] = field(default_factory=list)
    kept: int = 0
    error: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.target.as_dict(), "status": self.status, "removed": self.removed,
                "kept": self.kept, "error": self.error, "seconds": round(self.seconds, 2)}


@dataclass
class MaintainResult(passes.Ran[Outcome]):
    """A maintenance pass; a dry run removed nothing."""

    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "dry_run": self.dry_run, **super().as_dict(),
                "repositories": [o.as_dict() for o in self.outcomes]}


def _maintain_one(paths: Paths, target: Target, ledger: Ledger, run_id: str, dry_run: bool,
                  secrets: Secrets) -> Outcome:
    settings = paths.estate.settings.verification
    why = f"maintain: {describe(target.policy)}"
    with open_repository(paths, target.system, secrets=secrets) as repo:
        restic = Restic(repo, binary=paths.restic_binary,
                        timeout=settings.timeout.total_seconds(),
                        lock_wait=settings.lock_wait.total_seconds(), remove_stale=True)
        planned = restic.forget(target.policy, prune=False, dry_run=True)
        ids = [s.id for s in planned.removed]
        if dry_run:
            return Outcome(target, OK, ids, len(planned.kept))
        if ids:
            record_removed(ledger, target.system, target.repository, ids, why, run_id)
        done = restic.forget(target.policy, prune=True)
        removed = [s.id for s in done.removed]
        extra = [i for i in removed if i not in ids]
        if extra:
            record_removed(ledger, target.system, target.repository, extra, why, run_id)
        return Outcome(target, OK, removed, len(done.kept))


def require_secrets(paths: Paths, targets: Sequence[Target], secrets: Secrets) -> None:
    """Read every secret the pass needs (each repository's password, each host's
    maintenance password) before anything runs. Raises SecretError (exit 2) naming the
    vault and the key that is missing."""
    estate = paths.estate
    for target in targets:
        if target.skipped is not None:
            continue
        backup = estate.systems[target.system].backup
        assert backup is not None
        secrets.get(backup.password)
        host = estate.repository_host(target.repository)
        secrets.get(SecretRef(vault=host.maintenance_secret))


def maintain(paths: Paths, targets: Sequence[Target], *, ledger: Ledger, dry_run: bool = False,
             on_outcome: Callable[[Outcome], None] | None = None,
             secrets: Secrets | None = None) -> MaintainResult:
    """Maintain ``targets`` one after the other (a prune is the repository host's heaviest
    work); each is recorded in the ledger as an event of one ``maintain`` run. A failure
    of one (named) does not stop the others."""
    secrets = secrets or Secrets(paths)

    def work(target: Target, run_id: str) -> Outcome:
        if target.skipped is not None:
            return Outcome(target, SKIPPED)
        return _maintain_one(paths, target, ledger, run_id, dry_run, secrets)

    def summary(outcomes: Sequence[Outcome]) -> dict[str, Any]:
        return {"removed": sum(len(o.removed) for o in outcomes if not dry_run)}

    recorded = passes.Recorded[Target, Outcome](
        KIND, subject=lambda t: f"{t.system}@{t.repository}",
        failed=lambda t, error: Outcome(t, FAILED, error=error), summary=summary)
    ran = passes.run_pass(ledger, recorded, paths.estate.id, {
        "systems": [t.system for t in targets], "dry_run": dry_run}, targets, work,
        on_outcome=on_outcome)
    return MaintainResult(ran.run_id, ran.started, ran.outcomes, ran.seconds, dry_run)


def last_successes(ledger: Ledger, limit: int = 200) -> dict[tuple[str, str], float]:
    """(system, repository) → when a real (not dry) maintenance last succeeded on it, from
    the ledger's recent ``maintain`` runs."""
    return passes.last_successes(
        ledger, KIND, lambda event: (str(event.get("system")), str(event.get("repository"))),
        counts=lambda run: not run.params.get("dry_run"), limit=limit)
