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
    assert status.finished is not None
    finished = status.finished.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert {key: data[key] for key in ("time", "snapshot_id", "bytes", "files", "result",
                                       "error", "last_success")} == {
        "time": finished, "snapshot_id": "1a2b3c4d", "bytes": 98765, "files": 10,
        "result": "ok", "error": None, "last_success": finished}
    assert data["duration_seconds"] == round(status.duration_seconds, 3)
    families = {f.name: f for f in text_string_to_metric_families(config.textfile.read_text())}
    results = {s.labels["result"]: s.value for s in families["hopnhat_backup_result"].samples}
    assert results == {"ok": 1.0, "partial": 0.0, "failed": 0.0}
    sample = families["hopnhat_backup_bytes_processed"].samples[0]
    assert sample.labels == {"system": "qlvb", "host": "qlvb-db-01", "tier": "1"}
    assert sample.value == 98765
    [success] = families["hopnhat_backup_last_success_timestamp_seconds"].samples
    assert success.value == int(status.finished.timestamp())
    assert [p.name for p in config.textfile.parent.iterdir()] == [config.textfile.name]


def test_textfile_label_values_are_escaped(tmp_path: Path) -> None:
    status = Status("qlvb", 1, 'odd"host\\name', "repo", datetime.now(UTC))
    families = list(text_string_to_metric_families(textfile(status)))
    assert families[0].samples[0].labels["host"] == 'odd"host\\name'
