"""The HTML reports of a drill and of a rehearsal, from their evidence documents: self-contained
(inline CSS and SVG, no script, nothing fetched), in Vietnamese or English.

- :func:`drill_report` — ``templates/drill-report.html.j2``: the drill's targets and what it
  achieved, the timeline of its steps against the RTO target, and achieved RPO/RTO over the
  system's drills;
- :func:`rehearsal_report` — ``templates/drill-rehearsal.html.j2``: each system's drill as a
  bar on the rehearsal's time axis, with its RTO, against the tightest RTO target.

Times are in the estate's time zone ``zone`` with the offset written
(:func:`orchestrator.human.local_time`); the documents keep them in UTC.

Pure functions of the documents: reading the evidence and writing the file are the
actions' (:mod:`orchestrator.actions.drill.evidence`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from orchestrator.human import duration, local_time
from orchestrator.reports.drill import svg
from orchestrator.reports.drill.labels import label_set
from orchestrator.reports.html import render

PASSED = "passed"


@dataclass(frozen=True)
class PastDrill:
    """One of a system's drills, for the report's history chart."""

    started: float  #: when it started, seconds since the epoch
    rpo_seconds: float | None
    rto_seconds: float | None
    passed: bool


def _stamp(ts: float, zone: str) -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(zone)).strftime("%m-%d %H:%M")


def drill_report(doc: Mapping[str, Any], sha256: str, lang: str,
                 history: Sequence[PastDrill], zone: str) -> str:
    """The HTML of drill evidence ``doc`` (whose SHA-256 is ``sha256``), with ``history``
    (the system's drills, this one last, oldest first) as a chart, times in ``zone``.
    Raises HopnhatError (exit 2) for a language other than vi and en."""
    t = label_set(lang)
    bars = [svg.Bar(_fit(step_label(t, s)), s["start"], s["seconds"], s["ok"])
            for s in doc["steps"]]
    timeline = svg.timeline(bars, doc["targets"]["rto_seconds"], t["rto_target"],
                            t["seconds_since_start"])
    points = [svg.Point(_stamp(d.started, zone), d.rpo_seconds, d.rto_seconds, d.passed)
              for d in history]
    chart = svg.history(points, doc["targets"]["rpo_seconds"], doc["targets"]["rto_seconds"],
                        (t["achieved_rpo"], t["achieved_rto"]), t["target"])
    return render("drill-report.html.j2", doc=doc, sha256=sha256, t=t, lang=lang,
                  timeline=timeline, history=chart, history_count=len(points), zone=zone,
                  when=lambda v: local_time(v, zone), step_label=lambda s: step_label(t, s))


#: characters of a step's name the timeline's label column holds (the table has it whole)
LABEL_MAX = 34


def _fit(label: str) -> str:
    return label if len(label) <= LABEL_MAX else label[:LABEL_MAX - 1] + "…"


def step_label(t: Mapping[str, str], step: Mapping[str, Any]) -> str:
    """A step as the report names it: one of the drill's own in words, a recovery step of
    the system's by its estate name (``recovery: start PostgreSQL``)."""
    if step.get("kind") == "recovery":
        return f"{t['recovery']}: {step['name']}"
    return t.get("step_" + step["name"], step["name"])


def rehearsal_report(doc: Mapping[str, Any], sha256: str, lang: str, zone: str) -> str:
    """The HTML of rehearsal evidence ``doc`` (whose SHA-256 is ``sha256``), times in
    ``zone``. Raises HopnhatError (exit 2) for a language other than vi and en."""
    t = label_set(lang)
    bars = [svg.Bar(f"{s['group']}. {s['system']}", s["start"], s["seconds"],
                    s["verdict"] == PASSED,
                    note="" if s["rto_seconds"] is None else
                    f"(RTO {duration(s['rto_seconds'])})")
            for s in doc["systems"]]
    targets = [s["rto_target_seconds"] for s in doc["systems"] if s["rto_target_seconds"]]
    picture = svg.timeline(bars, min(targets) if targets else None, t["rto_target"],
                           t["seconds_since_rehearsal"])
    return render("drill-rehearsal.html.j2", doc=doc, sha256=sha256, t=t, lang=lang,
                  timeline=picture, zone=zone, when=lambda v: local_time(v, zone))
