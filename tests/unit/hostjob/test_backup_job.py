"""The job as a host runs it: a script under the host's python with only the modules the
backup_schedule role copies, and real runs against a local repository that keep the password
out of everything they write."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.hostjob.config import load_config
from tests.helpers import REPO
from tests.unit.hostjob.fakes import PASSWORD, config_data

JOB = REPO / "orchestrator" / "hostjob" / "backup_job.py"


# --- with a real restic (a local repository) ------------------------------------------------


@pytest.fixture
def local_repository(tmp_path: Path) -> dict[str, Any]:
    # make test installs Debian's restic (Makefile: APT_PACKAGES): its absence is a failure
    assert shutil.which("restic") is not None, "restic is not installed (make deps installs it)"
    password = tmp_path / "restic.password"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    repo = tmp_path / "repo"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
           "RESTIC_PASSWORD_FILE": str(password)}
    subprocess.run(["restic", "--repo", str(repo), "--no-cache", "init"], env=env, check=True,
                   capture_output=True)
    data = tmp_path / "data"
    (data / "documents").mkdir(parents=True)
    for number in range(5):
        (data / "documents" / f"doc-{number}.txt").write_text(f"document {number}\n" * 100)
    config = config_data(tmp_path, paths=[str(data)], pre_commands=[],
                         repository={"name": "local", "url": str(repo)},
                         password_file=str(password), restic=shutil.which("restic"))
    path = tmp_path / "backup-qlvb.json"
    path.write_text(json.dumps(config))
    return {"config": path, "data": data, "repo": repo, "env": env}


def _run_job(config: Path) -> subprocess.CompletedProcess[str]:
    # as the service runs it: the host's python, the job as a script
    return subprocess.run([sys.executable, str(JOB),
                           "--config", str(config)], capture_output=True, text=True,
                          timeout=120, cwd="/")


def test_a_real_run_makes_a_tagged_snapshot_and_keeps_the_password_out(
        local_repository: dict[str, Any]) -> None:
    done = _run_job(local_repository["config"])
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["result"] == "ok" and status["files"] == 5
    listed = subprocess.run(["restic", "--repo", str(local_repository["repo"]), "--no-cache",
                             "snapshots", "--json"], env=local_repository["env"],
                            capture_output=True, text=True, check=True)
    snapshots = json.loads(listed.stdout)
    assert [s["short_id"] for s in snapshots] == [status["snapshot_id"]]
    assert snapshots[0]["tags"] == ["system=qlvb", "tier=1", "host=qlvb-db-01"]
    assert snapshots[0]["hostname"] == "qlvb-db-01"
    config = load_config(local_repository["config"])
    for text in (done.stdout, done.stderr, config.status_file.read_text(),
                 config.textfile.read_text(), local_repository["config"].read_text()):
        assert PASSWORD not in text


def test_a_real_run_with_a_missing_path_is_partial_with_exit_3(
        local_repository: dict[str, Any]) -> None:
    data = json.loads(local_repository["config"].read_text())
    data["paths"].append(str(local_repository["data"] / "no-such-folder"))
    local_repository["config"].write_text(json.dumps(data))
    done = _run_job(local_repository["config"])
    assert done.returncode == 3, done.stderr
    status = json.loads(done.stdout)
    assert status["result"] == "partial"
    assert status["snapshot_id"]


# --- what the backup_schedule role copies to hosts ------------------------------------------


def test_the_modules_the_role_copies_are_all_the_job_imports(tmp_path: Path) -> None:
    """The job runs on a host from <library dir>/backup_job.py with exactly the modules the
    backup_schedule role lists (vars/main.yml), under the host's python as the service runs it
    (-S: no site-packages), isolated from the project: every import must resolve."""
    role_vars = yaml.safe_load((REPO / "playbooks/roles/backup_schedule/vars/main.yml")
                               .read_text())
    library = tmp_path / "lib"
    (library / "orchestrator").mkdir(parents=True)
    shutil.copy(REPO / "orchestrator" / role_vars["__backup_schedule_job"],
                library / "backup_job.py")
    for module in role_vars["__backup_schedule_modules"]:
        target = library / "orchestrator" / module
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "orchestrator" / module, target)
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    done = subprocess.run([python, "-E", "-S", str(library / "backup_job.py"), "--help"],
                          capture_output=True, text=True, cwd="/", env={"PATH": "/usr/bin:/bin"},
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--config" in done.stdout
    loaded = subprocess.run(
        [python, "-E", "-S", "-c", "import sys; sys.path.insert(0, sys.argv[1]); import backup_job;"
         "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('orchestrator'))))",
         str(library)], capture_output=True, text=True, cwd="/", timeout=60,
        env={"PATH": "/usr/bin:/bin"})
    assert loaded.returncode == 0, loaded.stderr
    copied = {("orchestrator." + m.removesuffix(".py").replace("/", ".")).removesuffix(".__init__")
              for m in role_vars["__backup_schedule_modules"]}
    assert set(loaded.stdout.split()) == copied  # all it needs, and nothing copied in vain
