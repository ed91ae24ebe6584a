"""``drill rehearse``: a whole-site DR rehearsal, like an SRM recovery plan.

The systems (``--tier N``: that tier's systems and, transitively, what they depend on;
``--all``: every system a drill can restore) are put in priority groups by their declared
dependencies — group 1 depends on nothing in the rehearsal, group k+1 on groups ≤ k (SSO,
then LGSP, then QLVB and DVC) — and drilled group by group, ``parallel`` at once within a
group. A system whose dependency failed is not run: it fails with the reason
("dependency sso failed"). One combined report: ``<state>/evidence/<rehearsal id>/``
``rehearsal.json`` (+ ``.sha256``) and ``report.html`` (rendered by
:mod:`orchestrator.reports.drill.html`), with each system's RTO and the rehearsal's total
time.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.actions.drill.evidence import evidence_dir, iso, load_evidence
from orchestrator.actions.drill.plan import drillable
from orchestrator.actions.drill.result import (
    ABORTED,
    EXIT_ABORTED,
    FAILED,
    PASSED,
    Cancel,
    DrillAborted,
    DrillProgress,
    DrillResult,
)
from orchestrator.actions.drill.run import run_drill, shielded
from orchestrator.actions.report_files import (
    evidence_folder,
    write_evidence_files,
    write_report_file,
)
from orchestrator.errors import EXIT_BAD_INPUT, HopnhatError, PlanError
from orchestrator.estate.model import Estate
from orchestrator.ledger import Ledger, operator_name
from orchestrator.reports.drill.html import rehearsal_report
from orchestrator.settings import Paths


def select(estate: Estate, tier: int | None, all_: bool) -> list[str]:
    """The systems of a rehearsal. Raises PlanError (exit 2) unless exactly one of
    ``tier`` and ``all_`` is given, or when the tier has no system a drill can restore."""
    if (tier is None) == (not all_):
        raise PlanError("give --tier N or --all", exit_code=EXIT_BAD_INPUT)
    able = [code for code in sorted(estate.systems) if not drillable(estate, code)]
    if all_:
        return able
    if tier not in estate.settings.tiers:
        raise PlanError(f"no tier {tier} in the estate (tiers: "
                        f"{', '.join(map(str, sorted(estate.settings.tiers)))})",
                        exit_code=EXIT_BAD_INPUT)
    chosen: set[str] = set()
    todo = [code for code in able if estate.systems[code].tier == tier]
    while todo:
        code = todo.pop()
        if code in chosen or code not in able:
            continue
        chosen.add(code)
        todo += estate.systems[code].depends_on
    if not chosen:
        raise PlanError(f"tier {tier} has no system a drill can restore",
                        exit_code=EXIT_BAD_INPUT)
    return sorted(chosen)


def levels(estate: Estate, codes: Sequence[str]) -> list[list[str]]:
    """Priority groups: a system's group is one after the last group of what it depends on
    within ``codes`` (the estate's checks forbid cycles)."""
    wanted = set(codes)
    level: dict[str, int] = {}

    def of(code: str) -> int:
        if code not in level:
            deps = [d for d in estate.systems[code].depends_on if d in wanted]
            level[code] = 1 + max((of(d) for d in deps), default=-1)
        return level[code]

    groups: dict[int, list[str]] = {}
    for code in sorted(wanted):
        groups.setdefault(of(code), []).append(code)
    return [groups[k] for k in sorted(groups)]


@dataclass(frozen=True)
class SystemOutcome:
    system: str
    group: int
    depends_on: tuple[str, ...]
    verdict: str
    reason: str = ""
    drill_id: str = ""
    start: float = 0.0
    seconds: float = 0.0
    rpo_seconds: float | None = None
    rto_seconds: float | None = None
    rto_target: float | None = None
    sha256: str = ""
    html: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "group": self.group,
                "depends_on": list(self.depends_on), "verdict": self.verdict,
                "reason": self.reason, "drill_id": self.drill_id,
                "start": round(self.start, 3), "seconds": round(self.seconds, 3),
                "end": round(self.start + self.seconds, 3),
                "rpo_seconds": self.rpo_seconds, "rto_seconds": self.rto_seconds,
                "rto_target_seconds": self.rto_target, "evidence_sha256": self.sha256,
                "report": self.html}


@dataclass
class RehearsalResult:
    rehearsal_id: str
    estate: str
    operator: str
    started_at: float
    groups: list[list[str]]
    parallel: int
    systems: list[SystemOutcome] = field(default_factory=list)
    finished_at: float = 0.0
    verdict: str = FAILED
    sha256: str = ""
    evidence: str = ""
    html: str = ""

    @property
    def seconds(self) -> float:
        return self.finished_at - self.started_at

    @property
    def exit_code(self) -> int:
        return {PASSED: 0, ABORTED: EXIT_ABORTED}.get(self.verdict, 1)

    def document(self) -> dict[str, Any]:
        return {"kind": "hopnhat-rehearsal-evidence", "version": 1,
                "rehearsal_id": self.rehearsal_id, "estate": self.estate,
                "operator": self.operator, "started_at": iso(self.started_at),
                "finished_at": iso(self.finished_at), "total_seconds": round(self.seconds, 3),
                "groups": self.groups, "parallel": self.parallel, "verdict": self.verdict,
                "systems": [s.as_dict() for s in self.systems]}

    def summary(self) -> dict[str, Any]:
        return {**self.document(), "sha256": self.sha256, "evidence": self.evidence,
                "html": self.html}


def _outcome(code: str, group: int, deps: tuple[str, ...], result: DrillResult, t0: float,
             paths: Paths) -> SystemOutcome:
    tier = paths.estate.tier(paths.estate.systems[code].tier)
    return SystemOutcome(code, group, deps, result.verdict, "; ".join(result.reasons),
                         result.drill_id, result.started_at - t0,
                         result.finished_at - result.started_at, result.rpo_seconds,
                         result.rto_seconds, tier.rto.total_seconds(), result.sha256,
                         result.html)


def rehearse(paths: Paths, groups: Sequence[Sequence[str]], *, ledger: Ledger,
             parallel: int = 2, lang: str = "en", progress: DrillProgress | None = None,
             samples: int = 12) -> RehearsalResult:
    """Drill ``groups`` in order, ``parallel`` at once within each. Out: the
    :class:`RehearsalResult` (verdict passed only when every system passed), recorded in the
    ledger (kind ``rehearsal``) with its report written. Raises DrillAborted (exit 130) after
    every running drill has torn down, when stopped by Ctrl-C or SIGTERM."""
    t0 = time.time()
    rid = ledger.start("rehearsal", paths.estate.id,
                       {"groups": groups, "parallel": parallel, "pid": os.getpid(),
                        "host": socket.gethostname()})
    work = _Rehearsal(paths, groups, ledger, t0, RehearsalResult(
        rid, paths.estate.id, operator_name(), t0, [list(g) for g in groups], parallel))

    def drill(code: str) -> DrillResult:
        return run_drill(paths, code, ledger=ledger, lang=lang, samples=samples,
                         progress=progress, cancel=work.cancel, params={"rehearsal": rid})

    try:
        for number, group in enumerate(groups, 1):
            work.run_group(number, group, parallel, drill)
    except KeyboardInterrupt:
        work.aborted = True
    finally:
        work.finish(lang)
    if work.aborted:
        raise DrillAborted(f"rehearsal {rid} was stopped; every running drill tore down")
    return work.result


@dataclass
class _Rehearsal:
    """A rehearsal under way: its record, the systems that failed so far (their dependants
    are not run), and whether it was stopped."""

    paths: Paths
    groups: Sequence[Sequence[str]]
    ledger: Ledger
    t0: float
    result: RehearsalResult
    cancel: Cancel = field(default_factory=Cancel)
    failed: set[str] = field(default_factory=set)
    aborted: bool = False

    def run_group(self, number: int, group: Sequence[str], parallel: int,
                  drill: Callable[[str], DrillResult]) -> None:
        """Drill the systems of one group, ``parallel`` at once, and record each. Raises
        KeyboardInterrupt once every running drill has torn down, when stopped."""
        pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="drill")
        try:
            futures: dict[str, Future[DrillResult]] = {}
            for code in group:
                if not self._skipped(code, number):
                    futures[code] = pool.submit(drill, code)
            for code, future in futures.items():
                self._collect(code, number, future)
        except KeyboardInterrupt:
            self.aborted = True
            self.cancel.abort()
            with shielded():
                pool.shutdown(wait=True)
            raise
        finally:
            pool.shutdown(wait=True)
        if self.aborted:
            raise KeyboardInterrupt

    def _deps(self, code: str) -> tuple[str, ...]:
        return tuple(d for d in self.paths.estate.systems[code].depends_on
                     if any(d in g for g in self.groups))

    def _skipped(self, code: str, number: int) -> bool:
        """Whether ``code`` is not run because a system it depends on failed (recorded)."""
        broken = [d for d in self._deps(code) if d in self.failed]
        if not broken:
            return False
        self.failed.add(code)
        self.result.systems.append(SystemOutcome(
            code, number, self._deps(code), "not run", f"dependency {broken[0]} failed",
            start=time.time() - self.t0))
        self.ledger.event(self.result.rehearsal_id, code, "skipped",
                          reason=f"dependency {broken[0]} failed")
        return True

    def _collect(self, code: str, number: int, future: Future[DrillResult]) -> None:
        """Wait for one system's drill and record its outcome."""
        deps = self._deps(code)
        try:
            drill = _result(future)
        except DrillAborted:
            self.aborted = True
            return
        except HopnhatError as exc:
            self.failed.add(code)
            self.result.systems.append(SystemOutcome(code, number, deps, FAILED, str(exc)))
            return
        outcome = _outcome(code, number, deps, drill, self.t0, self.paths)
        self.result.systems.append(outcome)
        self.ledger.event(self.result.rehearsal_id, code, "drill", **outcome.as_dict())
        if drill.verdict != PASSED:
            self.failed.add(code)

    def finish(self, lang: str) -> None:
        """The verdict, the report and the ledger's record, however the rehearsal ended."""
        result = self.result
        result.finished_at = time.time()
        result.verdict = ABORTED if self.aborted else (
            PASSED if result.systems and all(s.verdict == PASSED for s in result.systems)
            else FAILED)
        write_rehearsal(self.paths, result, lang)
        self.ledger.finish(result.rehearsal_id, result.verdict, result.summary())


def _result(future: Future[DrillResult]) -> DrillResult:
    """``future.result()``, waited for in short slices so that Ctrl-C reaches the main
    thread at once (a blocked wait without a timeout may never see it)."""
    while not future.done():
        wait([future], timeout=0.2)
    return future.result()


def write_rehearsal(paths: Paths, result: RehearsalResult, lang: str) -> None:
    """rehearsal.json (canonical), its .sha256, and report.html."""
    folder = evidence_folder(evidence_dir(paths, result.rehearsal_id))
    result.sha256, evidence = write_evidence_files(folder, result.document())
    result.evidence = str(evidence)
    result.html = str(render_rehearsal(paths, result.rehearsal_id, lang))


def render_rehearsal(paths: Paths, rehearsal_id: str, lang: str = "en") -> Path:
    """(Re-)write a rehearsal's report.html from its stored, checked evidence. Out: the
    report's path."""
    doc, sha = load_evidence(paths, rehearsal_id)
    out = evidence_dir(paths, rehearsal_id) / "report.html"
    write_report_file(out, rehearsal_report(doc, sha, lang, paths.estate.settings.timezone))
    return out
