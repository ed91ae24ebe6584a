"""``hopnhat vault pull``: the control host copies each system's snapshots into the vault.

The vault (``vault:`` of estate.yml) is a repository host at a third location that no
backup client reaches: it serves REST to the control host's credentials alone. For each
system the vault holds, the control host reads the system's repository through its host's
maintenance endpoint and runs ``restic copy`` into the system's repository on the vault
(made on first use with the source's chunker parameters, so copies deduplicate). Copying
only adds: a snapshot deleted or damaged in the main repository stays in the vault, and a
damaged blob is not copied (restic checks each blob's hash as it reads it). Snapshots are
matched by ID (a copy records its source's as ``original``), so a pull copies only what
the vault lacks. Every pull is a ledger run with an event per system; :func:`pull_flow` is
the command from end to end (what it shares with ``maintain``: :mod:`.passes`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.actions import passes
from orchestrator.actions.repositories import open_repository
from orchestrator.adapters.restic import Restic
from orchestrator.adapters.restic_errors import NoRepository
from orchestrator.adapters.restic_results import Snapshot
from orchestrator.errors import EstateError
from orchestrator.estate.model import Estate, SecretRef
from orchestrator.estate.secrets import Secrets
from orchestrator.ledger import Ledger
from orchestrator.reports.vault_metrics import render_vault_metrics
from orchestrator.settings import Paths
from orchestrator.verdicts import FAILED, OK

KIND = "vault-pull"  # the ledger's kind of run


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
class PullResult(passes.Ran[Outcome]):
    """A vault pull."""

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "systems": [o.as_dict() for o in self.outcomes]}


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


#: how a pull is recorded in the ledger
RECORDED = passes.Recorded[Target, Outcome](
    KIND, subject=lambda t: f"{t.system}@{t.vault}",
    failed=lambda t, error: Outcome(t, FAILED, error=error),
    summary=lambda outcomes: {"copied": sum(len(o.copied) for o in outcomes)})


def pull(paths: Paths, targets: Sequence[Target], *, ledger: Ledger,
         on_outcome: Callable[[Outcome], None] | None = None,
         secrets: Secrets | None = None) -> PullResult:
    """Pull ``targets`` one after the other, each recorded as an event of one ``vault pull``
    ledger run. A failure of one (named) does not stop the others."""
    secrets = secrets or Secrets(paths)
    ran = passes.run_pass(ledger, RECORDED, paths.estate.id,
                          {"systems": [t.system for t in targets]}, targets,
                          lambda target, _: _pull_one(paths, target, secrets),
                          on_outcome=on_outcome)
    return PullResult(ran.run_id, ran.started, ran.outcomes, ran.seconds)


def last_successes(ledger: Ledger, limit: int = 200) -> dict[str, float]:
    """System → when it was last pulled into the vault successfully, from the ledger's
    recent ``vault-pull`` runs."""
    return passes.last_successes(ledger, KIND, lambda event: str(event.get("system")),
                                 limit=limit)


def pull_flow(paths: Paths, systems: Sequence[str] = (), *, metrics: Path | None = None,
              hooks: passes.Hooks[Target, Outcome] | None = None) -> PullResult:
    """``hopnhat vault pull`` from end to end, the one flow the CLI calls: plan, read every
    secret the pull needs, the estate lock, the pull with the ledger open, then the
    textfile written to ``metrics`` (:func:`orchestrator.actions.passes.pass_flow`).
    ``hooks`` hear of the lock to take, the targets and each system's outcome. A pull that
    cannot run (no vault, an unknown system or one the vault does not hold, a key missing:
    exit 2) raises before anything is touched or recorded, and writes no metrics file."""
    hooks = hooks or passes.Hooks()
    targets = plan_pull(paths.estate, systems)
    secrets = Secrets(paths)
    require_secrets(paths, targets, secrets)  # a missing key: exit 2, nothing touched
    return passes.pass_flow(
        paths, targets, hooks, changes=True, metrics=metrics,
        run=lambda ledger: pull(paths, targets, ledger=ledger, on_outcome=hooks.outcome,
                                secrets=secrets),
        successes=last_successes,
        textfile=lambda result, before: render_vault_metrics(paths.estate.id, result, before))
