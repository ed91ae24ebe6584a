"""JUnit XML of a verification: one test suite per repository, one test case per check, so
CI tools (Jenkins, GitLab, …) show which system's which check failed. A failed check is a
``<failure>``, one that could not run an ``<error>``, one not asked for ``<skipped>``."""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET

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
