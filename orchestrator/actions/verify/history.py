"""``verify history``: past verifications from the ledger, newest first; of one system,
only the runs that verified it, with its verdict and the problems its checks named."""

from __future__ import annotations

from typing import Any

from orchestrator.ledger import Ledger, Run
from orchestrator.verdicts import ERROR, FAILED


def _verdicts(run: Run) -> dict[str, str]:
    """System → its repository's verdict in ``run``."""
    verdicts: dict[str, str] = (run.summary or {}).get("repositories", {})
    return verdicts


def history(ledger: Ledger, system: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """At most ``limit`` verifications (of ``system`` when given), newest first: each run's
    id, times, operator, status, exit code and every repository's verdict; with
    ``system``, its verdict and its problems (``check status: message``) too."""
    runs = ledger.history("verify", limit=limit,
                          of=lambda run: system is None or system in _verdicts(run))
    return [_row(ledger, run, system) for run in runs]


def _row(ledger: Ledger, run: Run, system: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run_id": run.id, "started": run.started, "finished": run.finished,
        "operator": run.operator, "status": run.status,
        "exit_code": (run.summary or {}).get("exit_code"), "repositories": _verdicts(run)}
    if system is not None:
        events = [e for e in ledger.events(run.id)
                  if e["subject"] == system and e["kind"] == "repository"]
        checks = events[-1]["checks"] if events else []
        row["verdict"] = row["repositories"].get(system)
        row["problems"] = [f"{c['name']} {c['status']}: {c['message']}" for c in checks
                           if c["status"] in (FAILED, ERROR)]
    return row
