"""Run a maintenance pass: per repository, forget by the keep-within policy and prune through
the host's maintenance endpoint, every removal recorded in the ledger before and after.

Before the real ``forget --prune``, a ``--dry-run`` names what the policy removes and those
IDs are recorded (``snapshot_log.record_removed``), so a pass that dies half-way leaves no
removal of its own unexplained to ``verify``'s vanished check; what the real run removed is
recorded again after it (a backup landing in between can change the set). Locks are waited
for (``verification.lock_wait``), stale ones removed, a live owner's never.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.actions.maintain.plan import Target, describe
from orchestrator.actions.repositories import open_repository
from orchestrator.actions.snapshot_log import record_removed
from orchestrator.adapters.restic import Restic
from orchestrator.errors import EXIT_FAILURE, EXIT_OK, HopnhatError
from orchestrator.estate.model import SecretRef
from orchestrator.estate.secrets import Secrets
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from orchestrator.verdicts import FAILED, OK, SKIPPED


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
class MaintainResult:
    run_id: str
    dry_run: bool
    started: float
    outcomes: list[Outcome]
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return EXIT_FAILURE if any(o.status == FAILED for o in self.outcomes) else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "dry_run": self.dry_run, "exit_code": self.exit_code,
                "seconds": round(self.seconds, 2),
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


def maintain(paths: Paths, targets: Sequence[Target], *, dry_run: bool = False,
             on_outcome: Callable[[Outcome], None] | None = None,
             secrets: Secrets | None = None) -> MaintainResult:
    """Maintain ``targets`` one after the other (a prune is the repository host's heaviest
    work); each is recorded in the ledger as an event of one ``maintain`` run. A failure
    of one (named) does not stop the others."""
    secrets = secrets or Secrets(paths)
    started = time.time()
    with Ledger(paths.ledger) as ledger:
        run_id = ledger.start("maintain", paths.estate.id, {
            "systems": [t.system for t in targets], "dry_run": dry_run})
        outcomes: list[Outcome] = []
        try:
            _each(paths, targets, ledger, run_id, dry_run, secrets, outcomes, on_outcome)
        except BaseException:
            ledger.finish(run_id, "stopped", {"done": [o.target.system for o in outcomes]})
            raise
        result = MaintainResult(run_id, dry_run, started, outcomes, time.time() - started)
        ledger.finish(run_id, "ok" if result.exit_code == EXIT_OK else "failed", {
            "removed": sum(len(o.removed) for o in outcomes if not dry_run),
            "failed": [o.target.system for o in outcomes if o.status == FAILED]})
        return result


def _each(paths: Paths, targets: Sequence[Target], ledger: Ledger, run_id: str, dry_run: bool,
          secrets: Secrets, outcomes: list[Outcome],
          on_outcome: Callable[[Outcome], None] | None) -> None:
    for target in targets:
        began = time.monotonic()
        if target.skipped is not None:
            outcome = Outcome(target, SKIPPED)
        else:
            try:
                outcome = _maintain_one(paths, target, ledger, run_id, dry_run, secrets)
            except HopnhatError as exc:
                outcome = Outcome(target, FAILED, error=str(exc))
        outcome.seconds = time.monotonic() - began
        ledger.event(run_id, f"{target.system}@{target.repository}", outcome.status,
                     **outcome.as_dict())
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)


def last_successes(paths: Paths, limit: int = 200) -> dict[tuple[str, str], float]:
    """(system, repository) → when a real (not dry) maintenance last succeeded on it, from
    the ledger's recent ``maintain`` runs."""
    out: dict[tuple[str, str], float] = {}
    with Ledger(paths.ledger) as ledger:
        for run in ledger.runs("maintain", limit=limit):
            if run.params.get("dry_run"):
                continue
            for event in ledger.events(run.id):
                key = (str(event.get("system")), str(event.get("repository")))
                if event.get("kind") == OK and key not in out:
                    out[key] = run.started
    return out
