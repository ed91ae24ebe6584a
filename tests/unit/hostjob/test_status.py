"""The status file and the textfile: written whole, the textfile readable by Prometheus
with its labels escaped."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from orchestrator.hostjob.backup_job import write_status
from orchestrator.hostjob.run import backup
from orchestrator.hostjob.status import Status
from orchestrator.hostjob.textfile import textfile
from tests.unit.hostjob.fakes import fakes, make_config


def test_the_status_file_and_textfile_are_written_whole(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    _log, make, command = fakes()
    status = backup(config, make_restic=make, run_command=command)
    write_status(config, status)
    data = json.loads(config.status_file.read_text())
    for key in ("time", "snapshot_id", "bytes", "files", "duration_seconds", "result", "error"):
        assert key in data
    assert data["result"] == "ok"
    families = {f.name: f for f in text_string_to_metric_families(config.textfile.read_text())}
    results = {s.labels["result"]: s.value for s in families["hopnhat_backup_result"].samples}
    assert results == {"ok": 1.0, "partial": 0.0, "failed": 0.0}
    sample = families["hopnhat_backup_bytes_processed"].samples[0]
    assert sample.labels == {"system": "qlvb", "host": "qlvb-db-01", "tier": "1"}
    assert sample.value == 98765
    assert "hopnhat_backup_last_success_timestamp_seconds" in families
    assert [p.name for p in config.textfile.parent.iterdir()] == [config.textfile.name]


def test_textfile_label_values_are_escaped(tmp_path: Path) -> None:
    status = Status("qlvb", 1, 'odd"host\\name', "repo", datetime.now(UTC))
    families = list(text_string_to_metric_families(textfile(status)))
    assert families[0].samples[0].labels["host"] == 'odd"host\\name'
