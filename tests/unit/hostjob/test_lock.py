"""The job's lock: a second run while one holds it is refused, runs nothing, and leaves the
running job's status file alone."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.hostjob.backup_job import main
from orchestrator.hostjob.lock import AlreadyRunning
from orchestrator.hostjob.run import backup
from tests.unit.hostjob.fakes import config_data, fakes, make_config


def test_a_second_run_is_refused_while_the_first_holds_the_lock(tmp_path: Path,
                                                               capsys: Any) -> None:
    config = make_config(tmp_path)
    config.lock_file.parent.mkdir(parents=True)
    config_file = tmp_path / "backup-qlvb.json"
    config_file.write_text(json.dumps(config_data(tmp_path)))
    log, make, command = fakes()
    with open(config.lock_file, "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        holder.write("PID 4242 since 2026-11-21T10:00:00Z\n")
        holder.flush()
        with pytest.raises(AlreadyRunning) as caught:
            backup(config, make_restic=make, run_command=command)
        assert "PID 4242" in str(caught.value)
        assert main(["--config", str(config_file)]) == 1
    assert log == []  # nothing ran: not even the pre-command
    assert not config.status_file.exists()  # the running job's status stays its own
    refused = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert refused["result"] == "refused"
    assert refused["error"]["class"] == "AlreadyRunning"
