"""JUnit XML of a verification: one test suite per repository, one test case per check, so
CI tools (Jenkins, GitLab, …) show which system's which check failed. A failed check is a
``<failure>``, one that could not run an ``<error>``, one not asked for ``<skipped>``.
The nightly drills' (:func:`render_drill_junit`): one test case per system of the night."""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from orchestrator.reports.drill.nightly import Night
from orchestrator.reports.verification import VerifyResult
from orchestrator.verdicts import ERROR, FAILED, SKIPPED


def _text(value: str) -> str:
    # XML 1.0 allows no control characters but tab, newline and carriage return
    return "".join(ch for ch in value if ch >= " " or ch in "\t\n\r")


def render_junit(result: VerifyResult) -> str:
    """The JUnit XML document (``<testsuites>``) of ``result``."""
    suites = ET.Element("testsuites", name="hopnhat verify")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    host = socket.gethostname()
    stamp = result.started.strftime("%Y-%m-%dT%H:%M:%S")
    for report in result.reports:
        t = report.target
        counts = {"tests": len(report.checks),
                  "failures": sum(c.status == FAILED for c in report.checks),
                  "errors": sum(c.status == ERROR for c in report.checks),
                  "skipped": sum(c.status == SKIPPED for c in report.checks)}
        attributes = {"name": t.key, "timestamp": stamp, "hostname": host,
                      "time": f"{report.duration_seconds:.3f}",
                      **{k: str(v) for k, v in counts.items()}}
        suite = ET.SubElement(suites, "testsuite", attributes)
        properties = ET.SubElement(suite, "properties")
        for name, value in (("system", t.system), ("tier", str(t.tier)),
                            ("repository", t.repository), ("run_id", result.run_id),
                            ("verdict", report.verdict),
                            ("read_data_subset", t.subset or "none")):
            ET.SubElement(properties, "property", name=name, value=_text(value))
        for check in report.checks:
            case = ET.SubElement(suite, "testcase", name=check.name,
                                 classname=f"hopnhat.verify.{t.system}.{t.repository}",
                                 time="0")
            message = _text(check.message)
            if check.status == FAILED:
                ET.SubElement(case, "failure", message=message, type="failed").text = message
            elif check.status == ERROR:
                ET.SubElement(case, "error", message=message, type="error").text = message
            elif check.status == SKIPPED:
                ET.SubElement(case, "skipped", message=message)
            ET.SubElement(case, "system-out").text = message
        for key, count in counts.items():
            totals[key] += count
    for key, total in totals.items():
        suites.set(key, str(total))
    suites.set("time", f"{result.duration_seconds:.3f}")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(
        suites, encoding="unicode") + "\n"


def render_drill_junit(night: Night) -> str:
    """The JUnit XML of a night of ``hopnhat drill nightly``: one test suite, one test case
    per system of tonight (``hopnhat.drill.<system>``). A failed drill is a ``<failure>``;
    one not run (window closed, too many scratch VMs) or stopped at the window's end is
    ``<skipped>`` with the reason; the drill's id and evidence in ``<system-out>``."""
    suites = ET.Element("testsuites", name="hopnhat drill nightly")
    counts = {"tests": len(night.outcomes),
              "failures": sum(o.status == FAILED for o in night.outcomes), "errors": 0,
              "skipped": sum(o.status in ("not run", "stopped") for o in night.outcomes)}
    stamp = datetime.fromtimestamp(night.started, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    attributes = {"name": f"drill nightly {night.estate}", "timestamp": stamp,
                  "hostname": socket.gethostname(), "time": f"{night.seconds:.3f}",
                  **{k: str(v) for k, v in counts.items()}}
    suite = ET.SubElement(suites, "testsuite", attributes)
    properties = ET.SubElement(suite, "properties")
    for name, value in (("estate", night.estate), ("night_id", night.night_id),
                        ("exit_code", str(night.exit_code))):
        ET.SubElement(properties, "property", name=name, value=_text(value))
    for o in night.outcomes:
        case = ET.SubElement(suite, "testcase", name=f"drill {o.system}",
                             classname=f"hopnhat.drill.{o.system}", time=f"{o.seconds:.3f}")
        reason = _text(o.reason)
        if o.status == FAILED:
            ET.SubElement(case, "failure", message=reason, type="failed").text = reason
        elif o.status in ("not run", "stopped"):
            ET.SubElement(case, "skipped", message=_text(f"{o.status}: {o.reason}"))
        out = [f"status: {o.status}", f"tier: {o.tier}"]
        out += [f"drill: {o.drill_id}"] if o.drill_id else []
        out += [f"achieved RPO: {o.rpo_seconds:.0f} s"] if o.rpo_seconds is not None else []
        out += [f"achieved RTO: {o.rto_seconds:.0f} s"] if o.rto_seconds is not None else []
        out += [f"evidence: {o.evidence}"] if o.evidence else []
        ET.SubElement(case, "system-out").text = _text("\n".join(out))
    for key, count in counts.items():
        suites.set(key, str(count))
    suites.set("time", f"{night.seconds:.3f}")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(
        suites, encoding="unicode") + "\n"
