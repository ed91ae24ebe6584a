"""Renderers of run results for other programs: JUnit XML (CI tools), the Prometheus
textfile format (node_exporter's textfile collector). Each returns text; :func:`write_report`
replaces a file with it atomically, so a reader never sees half a report."""

from __future__ import annotations

from pathlib import Path

from orchestrator.files import write_atomically


def write_report(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename (0644; its folder is created)."""
    write_atomically(path, text, 0o644)
