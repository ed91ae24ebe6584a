"""What a maintenance pass does to each repository (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import EstateError
from orchestrator.estate.model import Estate, Retention

#: how each count of a system's retention becomes a rule relative to the newest snapshot
#: (restic ignores snapshots dated in the future when it finds the newest: planted ones push
#: nothing out, as they would out of a keep-last rule)
_WITHIN = (("hourly", "within-hourly", "h", 1), ("daily", "within-daily", "d", 1),
           ("weekly", "within-weekly", "d", 7), ("monthly", "within-monthly", "m", 1),
           ("yearly", "within-yearly", "y", 1))


def within_policy(retention: Retention) -> dict[str, str]:
    """``{hourly: 48, daily: 14, weekly: 8, monthly: 12}`` →
    ``{within-hourly: 48h, within-daily: 14d, within-weekly: 56d, within-monthly: 12m}``
    (restic's durations know y, m, d and h). Raises ValueError when it keeps nothing."""
    policy = {flag: f"{getattr(retention, kind) * times}{unit}"
              for kind, flag, unit, times in _WITHIN if getattr(retention, kind) > 0}
    if not policy:
        raise ValueError("the retention keeps nothing")
    return policy


def describe(policy: dict[str, str]) -> str:
    """``keep-within-hourly 48h, keep-within-daily 14d`` for messages and the ledger."""
    return ", ".join(f"keep-{flag} {value}" for flag, value in policy.items())


@dataclass(frozen=True)
class Target:
    """One system's repository: the policy to apply, or why it is skipped."""

    system: str
    repository: str
    protocol: str
    policy: dict[str, str] = field(default_factory=dict)
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "repository": self.repository,
                "protocol": self.protocol, "policy": self.policy, "skipped": self.skipped}


def plan_maintenance(estate: Estate, systems: Sequence[str] = ()) -> list[Target]:
    """The repositories to maintain: those of ``systems`` (all with a backup when empty).
    A system on an SFTP repository host is skipped, saying why (its clients prune it).
    Raises EstateError (exit 2) naming an unknown system, one without a backup, or a
    retention that keeps nothing — before anything is touched."""
    problems: list[tuple[str, str, str]] = []
    for code in systems:
        if code not in estate.systems:
            problems.append(("systems", code, f"no system {code!r} (known: "
                             f"{', '.join(sorted(estate.systems))})"))
        elif estate.systems[code].backup is None:
            problems.append((estate.file_of("system", code), "backup",
                             f"system {code!r} has no backup to maintain"))
    if problems:
        raise EstateError(problems)
    wanted = list(dict.fromkeys(systems)) or sorted(
        code for code, s in estate.systems.items() if s.backup is not None)
    targets = []
    for code in wanted:
        backup = estate.systems[code].backup
        assert backup is not None
        host = estate.repository_host(backup.repository_host)
        if host.protocol != "rest":
            targets.append(Target(code, host.name, host.protocol, skipped=(
                "an SFTP repository host: its backup clients apply the retention themselves")))
            continue
        try:
            policy = within_policy(backup.retention)
        except ValueError as exc:
            problems.append((estate.file_of("system", code), "backup.retention", str(exc)))
            continue
        targets.append(Target(code, host.name, host.protocol, policy))
    if problems:
        raise EstateError(problems)
    return targets
