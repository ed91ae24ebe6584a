"""Benchmark: the PostgreSQL system (DVC) at ~1 GiB of table data, in a lab of its own.

    .venv/bin/python bench/bench_database.py [--db-rows 950000] [--octets 221,222]

Sets up: the lab (on 127.<a>.x / 127.<b>.x) with lab.yml's ``data.db_rows`` at DB_ROWS
applications (the default ~950 000 gives ~1 GiB of tables and indexes: 5.3 M rows of
applications, status history and attachments, the lab's own deterministic data set), DVC's
database VM provisioned (its guest boots PostgreSQL 15 and loads that data set at its first
boot), the host and the repository host configured. Then, on the database VM, against the
same repository (its append-only rest-server) with the same restic:

1. dump + backup: hopnhat's backup job (``hopnhat backup run --system dvc``), whose dump stage
   (consistent counts in an exported snapshot, ``pg_dump -Fc --snapshot``, streamed into
   restic: the manifest's ``duration_seconds``) against a raw
   ``pg_dump -Fc dvc | restic backup --stdin`` typed by hand — alternated, best of
   ``--repeat``, after a warm-up of each: target ≤ 1.05x;
2. a drill of DVC kept (``--keep``): each step; then, on its scratch VM, the raw
   ``restic restore`` of the same dump snapshot + ``createdb`` + ``pg_restore`` (best of two)
   against the drill's ``restore_database`` step: target ≤ 1.10x;
3. the fixed part of the drill: provision + configure + teardown: target < 10 s.

Prints figures; asserts nothing. Stops its lab at the end (every process by its PID).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bench_drill  # noqa: E402

from orchestrator import process  # noqa: E402
from orchestrator.actions.configure import ConfigurePlan, configure  # noqa: E402
from orchestrator.actions.drill import scratch as drill_scratch  # noqa: E402
from orchestrator.actions.drill.result import DrillResult  # noqa: E402
from orchestrator.actions.drill.run import run_drill  # noqa: E402
from orchestrator.adapters.ssh import Remote  # noqa: E402
from orchestrator.errors import HopnhatError  # noqa: E402
from orchestrator.hostjob.contract import JOB_CONFIG  # noqa: E402
from orchestrator.lab import control  # noqa: E402
from orchestrator.lab.engines import guest_sql  # noqa: E402
from orchestrator.ledger import Ledger  # noqa: E402
from orchestrator.settings import Paths  # noqa: E402

CODE, VM, DATABASE = "dvc", "dvc-db-01", "dvc"
HOPNHAT = Path(sys.executable).with_name("hopnhat")
#: the raw pipeline's snapshots are another host's, so the drill's "latest" of the VM stays
#: the job's files snapshot
RAW_HOST = "bench-raw"
SIZE = ("SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind = 'r'")


def setup(base: Path, octets: tuple[str, str], db_rows: int) -> Paths:
    from tests.helpers import replace_in

    return bench_drill.setup(base, octets, lambda estate_dir: replace_in(
        estate_dir / "lab.yml", "  change_rate: 0.05\n",
        f"  change_rate: 0.05\n  db_rows: {db_rows}\n"))


def sql(paths: Paths, text: str) -> str:
    return guest_sql(paths.lab, VM, "postgresql", text, database=DATABASE).strip()


def provision(paths: Paths, ledger: Ledger) -> None:
    bench_drill.provision_vm(paths, ledger, VM)
    t = time.monotonic()
    deadline = t + 900
    while True:  # the guest creates and seeds its cluster at its first boot
        try:
            if int(sql(paths, "SELECT count(*) FROM applications") or 0) > 0:
                print(f"{VM}: up with its data {time.monotonic() - t:.0f} s after apply")
                return
        except HopnhatError:  # not up yet: asked again until the deadline
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{VM}: PostgreSQL never answered with its data")
        time.sleep(0.5)  # poll interval of the deadline loop


def table_data(paths: Paths) -> int:
    """The bytes of the database's tables (with their indexes and TOAST)."""
    size = int(sql(paths, SIZE))
    rows = sql(paths, "SELECT (SELECT count(*) FROM applications) || ' applications, ' || "
                      "(SELECT count(*) FROM application_status) || ' status changes, ' || "
                      "(SELECT count(*) FROM attachments) || ' attachments'")
    print(f"table data: {size / 2**20:.0f} MiB ({rows})")
    return size


def configure_hosts(paths: Paths, ledger: Ledger) -> None:
    hosts = (VM, "repo-qnam-01")
    t = time.monotonic()
    done = configure(paths, ConfigurePlan(paths.estate.id, (CODE,), ",".join(hosts), hosts,
                                          False, False, 4), ledger=ledger)
    print(f"configure (site.yml): {done.verdict.status} in {time.monotonic() - t:.1f} s")


def hopnhat_backup(paths: Paths, remote: Remote) -> tuple[float, float]:
    """One ``hopnhat backup run``: (its dump stage's seconds, the whole run's seconds)."""
    env = {"HOPNHAT_ESTATE": str(paths.estate.root), "HOPNHAT_STATE": str(paths.state)}
    t = time.monotonic()
    done = process.run([str(HOPNHAT), "backup", "run", "--system", CODE], env=env,
                       timeout=3600)
    whole = time.monotonic() - t
    if done.returncode != 0:
        raise SystemExit(f"backup run exited {done.returncode}: {done.stdout[-800:]}"
                         f"{done.stderr[-800:]}")
    manifest = json.loads(remote.run(f"cat /var/lib/hopnhat/dumps/{DATABASE}.json",
                                     timeout=60).stdout)
    return float(manifest["duration_seconds"]), whole


def raw_command(config: dict[str, Any], restic: str) -> str:
    """``pg_dump -Fc dvc | restic backup --stdin`` as a person would type it on the host,
    against the job's own repository, password and CA."""
    repo = config["repository"]
    where = (["--repository-file", repo["location_file"]] if repo.get("location_file")
             else ["--repo", repo["url"]])
    if repo.get("cacert"):
        where += ["--cacert", repo["cacert"]]
    dump = ["runuser", "-u", "postgres", "--", "pg_dump", "-Fc", DATABASE]
    backup = [restic, *where, "--password-file", config["password_file"], "backup", "--stdin",
              "--stdin-filename", "raw-dvc.pgdump", "--host", RAW_HOST, "--tag", "bench-raw",
              "--quiet"]
    line = f"{shlex.join(dump)} | {shlex.join(backup)}"
    return f"bash -o pipefail -c {shlex.quote(line)}"


def raw_backup(remote: Remote, command: str) -> float:
    t = time.monotonic()
    done = remote.run(command + " 2>&1", timeout=3600)
    seconds = time.monotonic() - t
    if done.returncode != 0:
        raise SystemExit(f"raw pg_dump | restic failed: {done.stdout[-800:]}")
    return seconds


def measure_backup(paths: Paths, repeat: int) -> None:
    remote = Remote(drill_scratch.target(paths, next(v for v in paths.estate.vms
                                                     if v.name == VM)))
    try:
        config = json.loads(remote.run(f"cat {JOB_CONFIG.format(code=CODE)}",
                                       timeout=60).stdout)
        restic = config.get("restic") or "restic"
        command = raw_command(config, restic)
        print(f"warm-up: hopnhat dump {hopnhat_backup(paths, remote)[0]:.1f} s, raw "
              f"{raw_backup(remote, command):.1f} s")
        ours, raws, wholes = [], [], []
        for _ in range(repeat):
            dump, whole = hopnhat_backup(paths, remote)
            ours.append(dump)
            wholes.append(whole)
            raws.append(raw_backup(remote, command))
        print(f"dump + backup: hopnhat's dump stage {min(ours):.2f} s (runs "
              f"{', '.join(f'{s:.2f}' for s in ours)}; whole backup run incl. files "
              f"{min(wholes):.1f} s); raw pg_dump | restic backup --stdin {min(raws):.2f} s "
              f"(runs {', '.join(f'{s:.2f}' for s in raws)}): {min(ours) / min(raws):.3f}x "
              f"(target ≤ 1.05x); restic {restic}")
    finally:
        remote.close()


def show(result: DrillResult) -> None:
    for step in result.steps:
        print(f"  {step.name:36} {step.start:7.1f} s → {step.end:7.1f} s "
              f"({step.seconds:6.2f} s){'' if step.ok else '  FAILED ' + step.detail}")
    rto = "—" if result.rto_seconds is None else f"{result.rto_seconds:.1f} s"
    print(f"  verdict {result.verdict}, achieved RTO {rto}, RPO {result.rpo_seconds:.0f} s")


def dump_snapshot(paths: Paths, result: DrillResult) -> tuple[str, str]:
    """(the restored manifest's dump snapshot, its file) on the drill's scratch VM."""
    assert result.plan is not None
    remote = Remote(drill_scratch.target(paths, result.plan.scratch[0].vm))
    try:
        manifest = json.loads(remote.run(f"cat /var/lib/hopnhat/dumps/{DATABASE}.json",
                                         timeout=60).stdout)
    finally:
        remote.close()
    return str(manifest["snapshot"]), str(manifest["file"])


def raw_restore(paths: Paths, result: DrillResult, attempt: int) -> float:
    """``restic restore`` of the dump snapshot + ``createdb`` + ``pg_restore`` by hand on the
    drill's scratch VM, into a database of its own."""
    from orchestrator.actions.drill.remote import remote_command, scratch_repository
    from orchestrator.adapters.restic_argv import make_restore_argv

    assert result.plan is not None
    snapshot, file = dump_snapshot(paths, result)
    remote = Remote(drill_scratch.target(paths, result.plan.scratch[0].vm))
    try:
        repo = scratch_repository(paths.estate, CODE)
        # the drill's own restic command line (its cache, the repository's CA), as the
        # drill's restore_database step reads the same snapshot
        folder, name = f"/var/tmp/bench-raw-{attempt}", f"raw{attempt}"
        dumped = f"{folder}{file}"
        steps = [
            f"rm -rf {folder}",
            remote_command(repo, make_restore_argv(repo, snapshot, folder, verify=False)),
            f"chmod -R a+rX {folder}",
            f"runuser -u postgres -- createdb {name}",
            f"runuser -u postgres -- pg_restore --no-owner -d {name} {dumped}",
        ]
        t = time.monotonic()
        for step in steps:
            done = remote.run(step + " 2>&1", timeout=3600)
            if done.returncode != 0:
                raise SystemExit(f"raw restore failed at {step!r}: {done.stdout[-800:]}")
        seconds = time.monotonic() - t
        remote.run(f"runuser -u postgres -- dropdb {name}; rm -rf {folder}",
                   timeout=600)
        return seconds
    finally:
        remote.close()


def measure_drill(paths: Paths, ledger: Ledger) -> None:
    print("measured drill (--keep):")
    result = run_drill(paths, CODE, ledger=ledger, keep=True)
    show(result)
    steps = {s.name: s.seconds for s in result.steps}
    drill = paths.estate.systems[CODE].drill
    named = {r.name for r in (drill.recovery if drill else []) if r.restore_database}
    restoring = [s for s in result.steps if s.name in named]
    raw = min(raw_restore(paths, result, n) for n in (1, 2))
    ours = sum(s.seconds for s in restoring)
    print(f"restore + recover: the drill's {', '.join(s.name for s in restoring)} "
          f"{ours:.1f} s; raw restic restore + createdb + pg_restore {raw:.1f} s: "
          f"{ours / raw:.3f}x (target ≤ 1.10x)")
    t = time.monotonic()
    drill_scratch.teardown_kept(paths, result.drill_id, ledger)
    teardown = time.monotonic() - t
    fixed = steps["provision"] + steps["configure"] + teardown
    print(f"fixed part: provision {steps['provision']:.1f} s + configure "
          f"{steps['configure']:.1f} s + teardown {teardown:.2f} s = {fixed:.1f} s "
          f"(target < 10 s); plan {steps.get('plan', 0.0):.1f} s, files restore "
          f"{steps.get('restore', 0.0):.1f} s, probes {steps.get('probes', 0.0):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--db-rows", type=int, default=950_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--octets", default="221,222")
    args = parser.parse_args()
    a, b = args.octets.split(",")
    base = Path(tempfile.mkdtemp(prefix="hopnhat-bench-database-"))
    paths = setup(base, (a, b), args.db_rows)
    try:
        with Ledger(paths.ledger) as ledger:
            provision(paths, ledger)
            table_data(paths)
            configure_hosts(paths, ledger)
            measure_backup(paths, args.repeat)
            print("warm-up drill:")
            show(run_drill(paths, CODE, ledger=ledger))
            measure_drill(paths, ledger)
    finally:
        control.down(paths.lab)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
