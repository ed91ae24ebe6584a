"""Evidence and reports on disk: the canonical evidence with its sha256sum line, 0640 files
that replace a link rather than write through it."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from orchestrator.actions.report_files import (
    REPORT_MODE,
    canonical,
    evidence_folder,
    write_evidence_files,
    write_report_file,
)


def test_evidence_is_canonical_and_its_hash_checks_with_sha256sum(tmp_path: Path) -> None:
    folder = evidence_folder(tmp_path / "evidence" / "run-1")
    sha256, path = write_evidence_files(folder, {"b": 1, "a": "Quảng Nam"})
    assert path == folder / "evidence.json"
    assert path.read_bytes() == canonical({"a": "Quảng Nam", "b": 1})
    assert path.read_text().startswith('{\n  "a": "Quảng Nam",')
    checked = subprocess.run(["sha256sum", "-c", "evidence.json.sha256"], cwd=folder,
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert (folder / "evidence.json.sha256").read_text() == f"{sha256}  evidence.json\n"
    for written in folder.iterdir():
        assert stat.S_IMODE(written.stat().st_mode) == REPORT_MODE, written


def test_a_link_where_a_report_goes_is_replaced_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    report = tmp_path / "report.html"
    report.symlink_to(victim)
    write_report_file(report, "<p>report</p>")
    assert victim.read_text() == "untouched"
    assert not report.is_symlink() and report.read_text() == "<p>report</p>"
    assert stat.S_IMODE(report.stat().st_mode) == REPORT_MODE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "victim"]
