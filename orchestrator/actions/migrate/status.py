"""``migrate status``: every migration of the estate with its state (from the ledger), its
last manifest result and — read from each source VM now, without hashing — the drift
between source and target since the last copy: files added, changed (size or mtime) and
removed at the source since the manifest was taken."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.actions.drill.scratch import target as ssh_target
from orchestrator.actions.migrate import manifest
from orchestrator.actions.migrate.plan import sources
from orchestrator.actions.migrate.state import MigrationState, state_of
from orchestrator.adapters.ssh import Remote
from orchestrator.errors import EXIT_BAD_INPUT, HopnhatError, PlanError
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths


@dataclass(frozen=True)
class Drift:
    source: str
    counts: dict[str, int] | None
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "counts": self.counts, "error": self.error or None}


@dataclass(frozen=True)
class MigrationStatus:
    state: MigrationState
    to: str
    drift: tuple[Drift, ...]

    def as_dict(self) -> dict[str, Any]:
        return {**self.state.as_dict(), "to": self.to,
                "drift": [d.as_dict() for d in self.drift]}


def excluded(path: str, patterns: list[str]) -> bool:
    """Whether restic's exclude ``patterns`` leave ``path`` out (a pattern without ``/``
    matches any name on the way; one with ``/`` the path)."""
    parts = path.split("/")
    for pattern in patterns:
        if "/" in pattern.strip("/"):
            if fnmatch.fnmatchcase(path, pattern):
                return True
        elif any(fnmatch.fnmatchcase(p, pattern) for p in parts if p):
            return True
    return False


def drift_counts(before: dict[str, manifest.Entry], now: dict[str, manifest.Entry],
                 patterns: list[str]) -> dict[str, int]:
    """Added, changed (type, size or mtime of a file) and removed since ``before``."""
    now = {p: e for p, e in now.items() if not excluded(p, patterns)}
    added = sum(1 for p in now if p not in before)
    removed = sum(1 for p in before if p not in now)
    changed = sum(1 for p in now.keys() & before.keys()
                  if (now[p].type, now[p].size) != (before[p].type, before[p].size)
                  or (now[p].type == "f" and now[p].mtime_ns != before[p].mtime_ns))
    return {"added": added, "changed": changed, "removed": removed}


def status(paths: Paths, ledger: Ledger, systems: list[str] | None = None, *,
           drift: bool = True) -> list[MigrationStatus]:
    """The migrations of ``systems`` (all the estate declares when None). Raises PlanError
    (exit 2) naming a system that does not exist or declares no migration."""
    from orchestrator.actions.migrate.run import scan

    estate = paths.estate
    declared = sorted(c for c, s in estate.systems.items() if s.migration is not None)
    if systems:
        bad = [c for c in systems if c not in declared]
        if bad:
            raise PlanError(f"{', '.join(map(repr, bad))}: no such system with a migration "
                            f"(migrations: {', '.join(declared) or 'none'})",
                            exit_code=EXIT_BAD_INPUT)
    out = []
    for code in systems or declared:
        system = estate.systems[code]
        assert system.migration is not None and system.backup is not None
        state = state_of(ledger, estate.id, code)
        drifts: list[Drift] = []
        if drift and state.last_manifest and Path(state.last_manifest).is_file():
            kept = manifest.read(Path(state.last_manifest))
            by_source = {t.source: t.name for t in estate.targets_of(code)}
            for vm in sources(estate, code):
                before = kept.get(by_source.get(vm.name, ""), {})
                remote = Remote(ssh_target(paths, vm), estate.settings.ssh.alive)
                try:
                    now, _ = scan(remote, list(system.backup.paths), hashes=False,
                                  timeout=600)
                    drifts.append(Drift(vm.name, drift_counts(before, now,
                                                              list(system.backup.exclude))))
                except HopnhatError as exc:
                    drifts.append(Drift(vm.name, None, str(exc)))
                finally:
                    remote.close()
        out.append(MigrationStatus(state, system.migration.to, tuple(drifts)))
    return out
