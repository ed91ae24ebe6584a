"""``hopnhat vault pull``: the control host copies each system's snapshots into the vault.

The vault (``vault:`` of estate.yml) is a repository host at a third location that no
backup client reaches: it serves REST to the control host's credentials alone. For each
system the vault holds, the control host reads the system's repository through its host's
maintenance endpoint and runs ``restic copy`` into the system's repository on the vault
(made on first use with the source's chunker parameters, so copies deduplicate). Copying
only adds: a snapshot deleted or damaged in the main repository stays in the vault, and a
damaged blob is not copied (restic checks each blob's hash as it reads it). Snapshots are
matched by ID (a copy records its source's as ``original``), so a pull copies only what
the vault lacks. Every pull is a ledger run with an event per system.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.actions.repositories import open_repository
from orchestrator.adapters.restic import Restic
from orchestrator.adapters.restic_errors import NoRepository
from orchestrator.adapters.restic_results import Snapshot
from orchestrator.errors import EXIT_FAILURE, EXIT_OK, EstateError, HopnhatError
from orchestrator.estate.model import Estate, SecretRef
from orchestrator.estate.secrets import Secrets
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from orchestrator.verdicts import FAILED, OK


@dataclass(frozen=True)
class Target:
    """One system's pull: from its repository host into the vault."""

    system: str
    repository: str
    vault: str

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "repository": self.repository, "vault": self.vault}


def plan_pull(estate: Estate, systems: Sequence[str] = ()) -> list[Target]:
    """The systems to pull: ``systems`` (every system the vault holds when empty). Raises
    EstateError (exit 2) when the estate has no vault, or naming a system that is unknown
    or that the vault does not hold — before anything is touched."""
    vault = estate.settings.vault
    if vault is None:
        raise EstateError([("estate.yml", "vault", "this estate has no vault: add vault: "
                            "{repository_host: <a repository host with role: vault>}")])
    held = estate.vault_systems()
    problems = []
    for code in systems:
        if code not in estate.systems:
            problems.append(("systems", code, f"no system {code!r} (known: "
                             f"{', '.join(sorted(estate.systems))})"))
        elif code not in held:
            problems.append(("estate.yml", "vault.systems", f"the vault does not hold system "
                             f"{code!r} (it holds: {', '.join(held) or 'none'})"))
    if problems:
        raise EstateError(problems)
    wanted = list(dict.fromkeys(systems)) or held
    out = []
    for code in wanted:
        backup = estate.systems[code].backup
        assert backup is not None
        out.append(Target(code, backup.repository_host, vault.repository_host))
    return out


def missing_from(source: Sequence[Snapshot], held: Sequence[Snapshot]) -> list[Snapshot]:
    """The snapshots of ``source`` that ``held`` (the vault's) has no copy of, oldest
    first."""
    have = {s.original or s.id for s in held}
    return sorted((s for s in source if s.id not in have), key=lambda s: s.time)


@dataclass
class Outcome:
    """What one system's pull did."""

    target: Target
    status: str
    copied: list[str] = field(default_factory=list)
    held: int = 0
    created: bool = False
    error: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.target.as_dict(), "status": self.status, "copied": self.copied,
                "held": self.held, "created": self.created, "error": self.error,
                "seconds": round(self.seconds, 2)}


@dataclass
class PullResult:
    run_id: str
    started: float
    outcomes: list[Outcome]
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return EXIT_FAILURE if any(o.status == FAILED for o in self.outcomes) else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "exit_code": self.exit_code,
                "seconds": round(self.seconds, 2),
                "systems": [o.as_dict() for o in self.outcomes]}


def require_secrets(paths: Paths, targets: Sequence[Target], secrets: Secrets) -> None:
    """Read every secret the pull needs before anything runs (SecretError, exit 2, names
    the key that is missing)."""
    estate = paths.estate
    for target in targets:
        backup = estate.systems[target.system].backup
        assert backup is not None
        secrets.get(backup.password)
        for name in (target.repository, target.vault):
            host = estate.repository_host(name)
            if host.protocol == "rest":
                secrets.get(SecretRef(vault=host.maintenance_secret))


def _pull_one(paths: Paths, target: Target, secrets: Secrets) -> Outcome:
    settings = paths.estate.settings.verification
    timeout, lock_wait = settings.timeout.total_seconds(), settings.lock_wait.total_seconds()
    with open_repository(paths, target.system, secrets=secrets) as main, \
            open_repository(paths, target.system, vault=True, secrets=secrets) as copy:
        source = Restic(main, binary=paths.restic_binary, timeout=timeout, lock_wait=lock_wait)
        vault = Restic(copy, binary=paths.restic_binary, timeout=timeout, lock_wait=lock_wait,
                       remove_stale=True)
        snapshots = source.snapshots(no_lock=True)
        created = False
        try:
            held = vault.snapshots()
        except NoRepository:
            # the same chunker parameters as the source: copied data deduplicates
            vault.init(chunker_from=main)
            held, created = [], True
        missing = missing_from(snapshots, held)
        if missing:
            vault.copy(main, [s.id for s in missing])
        return Outcome(target, OK, [s.id for s in missing], len(held) + len(missing), created)


def pull(paths: Paths, targets: Sequence[Target], *,
         on_outcome: Callable[[Outcome], None] | None = None,
         secrets: Secrets | None = None) -> PullResult:
    """Pull ``targets`` one after the other, each recorded as an event of one ``vault pull``
    ledger run. A failure of one (named) does not stop the others."""
    secrets = secrets or Secrets(paths)
    started = time.time()
    with Ledger(paths.ledger) as ledger:
        run_id = ledger.start("vault-pull", paths.estate.id,
                              {"systems": [t.system for t in targets]})
        outcomes: list[Outcome] = []
        try:
            for target in targets:
                began = time.monotonic()
                try:
                    outcome = _pull_one(paths, target, secrets)
                except HopnhatError as exc:
                    outcome = Outcome(target, FAILED, error=str(exc))
                outcome.seconds = time.monotonic() - began
                ledger.event(run_id, f"{target.system}@{target.vault}", outcome.status,
                             **outcome.as_dict())
                outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)
        except BaseException:
            ledger.finish(run_id, "stopped", {"done": [o.target.system for o in outcomes]})
            raise
        result = PullResult(run_id, started, outcomes, time.time() - started)
        ledger.finish(run_id, "ok" if result.exit_code == EXIT_OK else "failed", {
            "copied": sum(len(o.copied) for o in outcomes),
            "failed": [o.target.system for o in outcomes if o.status == FAILED]})
        return result


def last_successes(paths: Paths, limit: int = 200) -> dict[str, float]:
    """System → when it was last pulled into the vault successfully, from the ledger's
    recent ``vault-pull`` runs."""
    out: dict[str, float] = {}
    with Ledger(paths.ledger) as ledger:
        for run in ledger.runs("vault-pull", limit=limit):
            for event in ledger.events(run.id):
                system = str(event.get("system"))
                if event.get("kind") == OK and system not in out:
                    out[system] = run.started
    return out
