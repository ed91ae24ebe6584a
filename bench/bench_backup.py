"""Benchmark (issue 4): hopnhat's backup job against a raw ``restic backup`` of the same data
to the same repository, on a lab host, for each kind of repository an estate has (issue 19):
``rest`` (the example's: the system's own append-only rest-server, TLS with the lab's CA) and
``sftp`` (a chrooted SFTP account, for sites that only have SSH).

For each kind, a lab of its own (vcsim, the hypervisor, sshd guests, the repository hosts)
for a copy of the example estate on other loopback addresses, brought down before the next
kind's; for ``sftp`` that copy moves ``ioc``'s backup to an SFTP repository host added beside
the rest one (same site, storage and retention; no rest port or quota). One system (``ioc``,
one VM) applied and configured with ``hopnhat configure``; its /srv/ioc filled by the lab's
data generator with ``--size-mb`` MiB in ``--files`` files (day 0), and turned into day 1
(``change_rate`` 0.05: 5 % of the files rewritten, added or deleted) and back for each
"5 %-changed" run.

Measured on the host (a timer around the command, in Python on the host):
  first backup (empty repository, re-created for each run as the client creates it: ``restic
  init`` with the job's location) and 5 %-changed backup — raw ``restic backup`` (the job's
  restic binary, location, CA, tags and cache, taken from the job's own config as the job
  reads it: for ``rest`` ``--repository-file`` with the system's credentials and ``--cacert``
  of the lab's CA, exactly as the job and the restic_client role run it), the job with
  backup only (its config without retention), and, where the job prunes (``sftp``: its
  retention), the job as configured (forget --prune) against raw backup + raw ``forget
  --prune``. A rest client only adds: its job as configured is the backup alone (the control
  host prunes through the maintenance endpoint, measured by ``bench/bench_maintain.py``), so
  its "as configured" baseline is raw backup;
and from the control host: the job triggered over SSH as ``backup run`` starts it (OpenSSH's
ssh, output streamed), and ``hopnhat backup run --system ioc`` (the whole CLI process).

The job configs name a timed restic (the real one, its wall time logged on the host), so
each job run's time outside restic is measured in that same run as well.

rest-server counts ``ioc``'s quota (100 GB, its ``--max-size``) from what it has stored since it
started: a repository emptied behind its back for each first backup still counts, so a run
must store less than that in all: about (2 x ``--first-rounds`` + 1) x ``--size-mb``.

Prints figures, medians of ``--rounds`` runs, and ratios, for each kind; asserts nothing.

    .venv/bin/python bench/bench_backup.py [--size-mb 1024] [--files 2100] [--rounds 3]
        [--first-rounds N] [--kinds rest,sftp] [--profile-cli FILE] [--octets A,B]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchlab import free_port  # noqa: E402

from orchestrator import process  # noqa: E402
from orchestrator.actions.configure import configure, plan  # noqa: E402
from orchestrator.adapters import ssh  # noqa: E402
from orchestrator.adapters.restic_argv import (  # noqa: E402
    make_backup_argv,
    make_forget_argv,
    make_init_argv,
)
from orchestrator.estate import load_estate  # noqa: E402
from orchestrator.estate.endpoints import repository_folder  # noqa: E402
from orchestrator.estate.model import Estate  # noqa: E402
from orchestrator.hostjob.config import parse_config  # noqa: E402
from orchestrator.hostjob.contract import (  # noqa: E402
    JOB_CONFIG,
    JOB_PYTHON,
    JOB_PYTHON_FLAGS,
    JOB_SCRIPT,
)
from orchestrator.lab import control, data  # noqa: E402
from orchestrator.lab.guests import guest_srv  # noqa: E402
from orchestrator.ledger import Ledger  # noqa: E402
from orchestrator.settings import Paths  # noqa: E402

HOPNHAT = Path(sys.executable).with_name("hopnhat")
CODE = "ioc"
JOB = JOB_SCRIPT
CONFIG = JOB_CONFIG.format(code=CODE)
BACKUP_ONLY = f"/etc/hopnhat/backup-{CODE}.bench-backup-only.json"
#: the kinds of repository measured: the estate's (rest) and the one kept for SSH-only sites
KINDS = ("rest", "sftp")
#: the SFTP repository host the ``sftp`` kind adds beside the estate's rest one
SFTP_HOST = "repo-bench-sftp"
# the issue's measurements (restic 0.14, SFTP on loopback, ~1 GiB in 2,100 files)
ISSUE_FIRST, ISSUE_CHANGED, RUNRESTIC_RATIO = 8.8, 1.4, 1.16

# restic as the timed job configs name it: the real restic, its wall time logged (ns), so
# that each job run's time outside restic is measured in that very run (the spread of
# restic's own time, ±0.3 s run to run, is larger than the job's cost)
RESTIC_TIMED = "/usr/local/lib/hopnhat/bench-restic-timed"
RESTIC_TIMES = "/var/tmp/hopnhat-bench-restic.times"


def restic_timer(real: str) -> str:
    return (f"#!/bin/sh\nstart=$(date +%s%N)\n{shlex.quote(real)} \"$@\"\ncode=$?\n"
            f"echo \"$start $(date +%s%N)\" >> {RESTIC_TIMES}\nexit $code\n")


#: the runs' names where the report reads them
CONFIGURED = "job as configured (+ forget --prune)"
RAW_FORGET = "raw restic backup + forget --prune"
OVER_SSH = "job, backup only, over SSH from the control host"
CLI = f"hopnhat backup run --system {CODE} (as configured)"

# a timer that runs on the host: argv after "--", its wall time and exit code on stdout
HOST_TIMER = ("import subprocess, sys, time\n"
              "t = time.perf_counter()\n"
              "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
              "stderr=subprocess.PIPE)\n"
              "print(time.perf_counter() - t, r.returncode)\n"
              "sys.stderr.write(r.stderr.decode(errors='replace')[-2000:])\n")


def bench_estate(dest: Path, octets: tuple[str, str], size_mb: float, files: int,
                 kind: str) -> Path:
    """The example estate on ``127.<octets>`` and a free vCenter port, with lab data of
    ``size_mb`` MiB in ``files`` files; for ``kind`` sftp, ioc backs up over SFTP."""
    shutil.copytree(REPO / "inventory", dest, ignore=shutil.ignore_patterns("secrets.vault.yml"))
    ports = {8989: free_port()}  # Đà Nẵng's vCenter, then Quảng Nam's on another port
    while len(set(ports.values())) < 2:
        ports[8990] = free_port()
    for path in dest.rglob("*.yml"):
        text = path.read_text().replace("127.10.", f"127.{octets[0]}.")
        text = text.replace("127.20.", f"127.{octets[1]}.")
        for old, new in ports.items():
            text = text.replace(f"127.0.0.1:{old}/", f"127.0.0.1:{new}/")
        path.write_text(text)
    lab = yaml.safe_load((dest / "lab.yml").read_text())
    lab["data"] = {"size_mb": size_mb, "files": files, "change_rate": 0.05}
    (dest / "lab.yml").write_text(yaml.safe_dump(lab, sort_keys=False))
    if kind == "sftp":
        to_sftp(dest)
    return dest


def to_sftp(estate_dir: Path) -> None:
    """ioc's backup moved to :data:`SFTP_HOST`, an SFTP repository host added beside its
    rest one (same site and storage, the next address); its retention, now run by its own
    job, stays."""
    settings = yaml.safe_load((estate_dir / "estate.yml").read_text())
    system_file = estate_dir / "systems" / f"{CODE}.yml"
    system = yaml.safe_load(system_file.read_text())
    backup = system["backup"]
    rest_host = next(h for h in settings["repository_hosts"]
                     if h["name"] == backup["repository_host"])
    network, last = rest_host["address"].rsplit(".", 1)
    settings["repository_hosts"].append({
        "name": SFTP_HOST, "site": rest_host["site"], "address": f"{network}.{int(last) + 1}",
        "storage_path": rest_host["storage_path"], "capacity_gb": rest_host["capacity_gb"],
        "protocol": "sftp"})
    for rest_only in ("port", "quota_gb", "rest_password"):
        backup.pop(rest_only, None)
    backup["repository_host"] = SFTP_HOST
    (estate_dir / "estate.yml").write_text(yaml.safe_dump(settings, sort_keys=False))
    system_file.write_text(yaml.safe_dump(system, sort_keys=False, allow_unicode=True))


class Host:
    """The benchmarked VM, reached as root over SSH (host key pinned)."""

    def __init__(self, paths: Paths, name: str) -> None:
        vm = next(v for v in paths.estate.vms if v.name == name)
        self.name = name
        self.target = ssh.Target(host=name, address=str(vm.ip), port=22, user="root",
                                 key_file=paths.private_key, known_hosts=paths.known_hosts)

    def sh(self, command: str, stdin: str | None = None, timeout: float = 3600) -> str:
        client = ssh.connect(self.target)
        try:
            done = ssh.execute(client, self.target, command, timeout=timeout, stdin=stdin)
        finally:
            client.close()
        if done.returncode != 0:
            raise SystemExit(f"{self.name}: {command[:80]}: exit {done.returncode}: "
                             f"{done.stderr[-1500:]}")
        return done.stdout

    def restic_seconds(self) -> float:
        """restic's wall time in the runs since the last call (the timed restic's log)."""
        out = self.sh(f"touch {RESTIC_TIMES} && cat {RESTIC_TIMES} && : > {RESTIC_TIMES}")
        spans = [line.split() for line in out.splitlines() if line.strip()]
        return sum(int(end) - int(start) for start, end in spans) / 1e9

    def timed(self, argv: Sequence[str]) -> float:
        """Wall time of ``argv`` measured on the host (no SSH in it)."""
        out = self.sh(shlex.join(["python3", "-c", HOST_TIMER, *argv]))
        seconds, code = out.split()
        if code not in ("0", "3"):
            raise SystemExit(f"{self.name}: {argv[0]} exited {code}")
        return float(seconds)


def cli_help(env: dict[str, str]) -> float:
    start = time.perf_counter()
    process.run([str(HOPNHAT), "--help"], env=env, timeout=120)
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=1024)
    parser.add_argument("--files", type=int, default=2100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--first-rounds", type=int, default=None,
                        help="rounds of the first (empty repository) backups; default "
                             "--rounds (each takes ~20 s a kind)")
    parser.add_argument("--profile-cli", metavar="FILE",
                        help="at the end, one `hopnhat backup run` under cProfile, saved to "
                             "FILE, its top 30 printed")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="the kinds of repository measured, one lab each, in this order "
                             f"(default {','.join(KINDS)})")
    parser.add_argument("--octets", default=os.environ.get("HOPNHAT_BENCH_OCTETS", "197,198"),
                        help="second octets of the lab's primary and secondary addresses")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    if not kinds or not set(kinds) <= set(KINDS):
        parser.error(f"--kinds: a comma-separated list of {', '.join(KINDS)}")
    first_octet, second_octet = args.octets.split(",")
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix=f"hopnhat-bench-backup-{kind}-") as tmp:
            base = Path(tmp)
            estate_dir = bench_estate(base / "inventory", (first_octet, second_octet),
                                      args.size_mb, args.files, kind)
            with private_lab(base / "state", estate_dir) as paths:
                run(paths, args)
    print(f"\nthe issue's figures (restic 0.14, SFTP, ~1 GiB/2,100 files): first {ISSUE_FIRST} s, "
          f"5 % changed {ISSUE_CHANGED} s; runrestic {RUNRESTIC_RATIO}x")


@contextlib.contextmanager
def private_lab(state: Path, estate_dir: Path) -> Iterator[Paths]:
    """A lab of its own for ``estate_dir`` in ``state`` (vcsim reused when ``make`` built
    it), brought up, and down at the end whatever happens."""
    built = REPO / ".hopnhat" / "lab" / "bin"
    if built.is_dir():
        shutil.copytree(built, state / "lab" / "bin")
    paths = Paths(state, load_estate(estate_dir))
    try:
        control.up(paths)
        yield paths
    finally:
        control.down(paths.lab)


def run(paths: Paths, args: argparse.Namespace) -> None:
    env = {**os.environ, "HOPNHAT_ESTATE": str(paths.estate.root),
           "HOPNHAT_STATE": str(paths.state)}
    bench = BackupBench(paths, args, env, ready(paths, args, env))
    first = bench.first_backups()
    changed, outside = bench.changed_backups()
    overhead = {name: [measure() for _ in range(args.rounds)]
                for name, measure in bench.overheads().items()}
    report(first, changed, outside, overhead, bench.prunes)
    if args.profile_cli:
        profile = Path(args.profile_cli)
        bench.profile_cli(profile.with_name(f"{profile.stem}-{bench.kind}{profile.suffix}"))


def ready(paths: Paths, args: argparse.Namespace, env: dict[str, str]) -> str:
    """The system applied, its data written by the lab, and configured. Out: its VM's
    name."""
    estate = paths.estate
    vm = next(v for v in estate.vms if v.system == CODE and v.data)
    started = time.perf_counter()
    done = process.run([str(HOPNHAT), "apply", "--system", CODE, "--yes"], env=env, timeout=600)
    if not done.ok:
        raise SystemExit(done.stderr)
    seeded = paths.lab / "guests" / vm.name / ".seeded"
    deadline = time.monotonic() + 1800
    while not (seeded.exists() and ssh.wait_for_port(str(vm.ip), 22, 1.0)):
        if time.monotonic() > deadline:
            raise SystemExit(f"{vm.name}: no data after 30 min")
        time.sleep(0.5)  # poll interval while the lab writes the data set
    with Ledger(paths.ledger) as ledger:
        result = configure(paths, plan(estate, [CODE]), ledger=ledger)
    if result.exit_code != 0:
        raise SystemExit(f"configure failed: {result.run.failures}")
    print(f"\n=== {CODE}'s repository: {repository_kind(estate)} ===")
    print(f"lab ready in {time.perf_counter() - started:.0f} s: {vm.name}, "
          f"{args.size_mb:g} MiB in {args.files} files, on loopback, {os.cpu_count()} cores")
    return vm.name


def repository_kind(estate: Estate) -> str:
    """How ioc's client reaches its repository, in words."""
    backup = estate.systems[CODE].backup
    assert backup is not None
    host = estate.repository_host(backup.repository_host)
    if host.protocol == "rest":
        return (f"rest on {host.name}: its own append-only rest-server (port {backup.port}), "
                "TLS checked with --cacert against the lab's CA")
    return f"sftp on {host.name}: a chrooted SFTP account"


class BackupBench:
    """The runs measured on VM ``name``: its job's config switched to a timed restic (and a
    backup-only copy of it), the raw restic commands the job runs, and its data turned from
    day 0 to day 1 and back."""

    def __init__(self, paths: Paths, args: argparse.Namespace, env: dict[str, str],
                 name: str) -> None:
        estate = paths.estate
        self.args, self.env = args, env
        self.host = host = Host(paths, name)
        self.seed = f"{estate.id}/{name}"
        config = json.loads(host.sh(f"cat {CONFIG}"))
        # the job's config as the job reads it, so the raw commands open the repository as
        # the job does (rest: its location file with the system's credentials, and --cacert)
        job = self.job_config = parse_config(config, CONFIG)
        self.kind = "rest" if job.repository.location_file is not None else "sftp"
        #: whether the job prunes (forget --prune by its retention): an SFTP client does; a
        #: rest client only adds, and its config has no retention
        self.prunes = bool(job.retention)
        real_restic = host.sh(f"command -v {shlex.quote(job.restic)}").strip()
        host.sh(f"cat > {RESTIC_TIMED} && chmod 755 {RESTIC_TIMED}",
                stdin=restic_timer(real_restic))
        timed_config = {**config, "restic": RESTIC_TIMED}  # the job's own config, restic timed
        host.sh(f"umask 027 && cat > {CONFIG}", stdin=json.dumps(timed_config, indent=2))
        host.sh(f"umask 027 && cat > {BACKUP_ONLY}",
                stdin=json.dumps({**timed_config, "retention": {}}))
        repo = job.restic_repository(job.repository)
        cache = job.cache_dir  # emptied with the repository (None: the job runs --no-cache)
        self.env_argv = ["env", f"RESTIC_PASSWORD_FILE={job.password_file}", "HOME=/root",
                         *([f"RESTIC_CACHE_DIR={cache}"] if cache else [])]
        self.forget_cache = f"rm -rf {shlex.quote(str(cache))} && " if cache else ""

        def raw(argv: Sequence[str]) -> list[str]:  # the job's restic binary, not PATH's
            return [*self.env_argv, real_restic, *argv[1:]]

        self.raw_init = raw(make_init_argv(repo))
        self.raw_backup = raw(make_backup_argv(repo, job.paths, job.tags, job.exclude,
                                               job.host))
        self.raw_forget = raw(make_forget_argv(repo, job.retention, True, host=job.host)) \
            if self.prunes else []
        # as the service runs it (ExecStart: python3 -S, see orchestrator/actions/backup/run.py)
        self.job = [JOB_PYTHON, *JOB_PYTHON_FLAGS, JOB, "--config", CONFIG]
        self.job_backup_only = [JOB_PYTHON, *JOB_PYTHON_FLAGS, JOB, "--config", BACKUP_ONLY]
        backup = estate.systems[CODE].backup
        assert backup is not None
        self.storage = estate.repository_host(backup.repository_host)
        self.repository_root = ssh.Target(
            host=self.storage.name, address=str(self.storage.address), port=self.storage.port,
            user="root", key_file=paths.private_key, known_hosts=paths.known_hosts)
        self.dest = guest_srv(paths.lab, name) / CODE
        self.day = 0

    def empty_repository(self) -> None:
        """The repository's folder emptied on its host, and made again by ``restic init``
        as the client makes it (the restic_client role: the job's location, the CA)."""
        folder = repository_folder(self.storage, CODE)
        client = ssh.connect(self.repository_root)
        try:
            done = ssh.execute(client, self.repository_root,
                               f"find {shlex.quote(folder)} -mindepth 1 -delete")
        finally:
            client.close()
        if done.returncode != 0:
            raise SystemExit(f"{self.storage.name}: emptying {folder}: exit "
                             f"{done.returncode}: {done.stderr[-500:]}")
        self.host.sh(self.forget_cache + shlex.join(self.raw_init))
        if self.day != 0:
            self.toggle()

    def toggle(self) -> None:
        """Day 0 → day 1 or back: about 5 % of the files differ from the last backup's."""
        self.day = 1 - self.day
        data.generate(self.dest, seed=self.seed, size_mb=self.args.size_mb,
                      files=self.args.files, day=self.day, change_rate=0.05)

    def over_ssh(self, command: Sequence[str]) -> float:
        """As ``backup run`` starts the job: OpenSSH's ssh, output streamed."""
        start = time.perf_counter()
        done = ssh.run_streaming(self.host.target, shlex.join(command))
        took = time.perf_counter() - start
        if done.returncode not in (0, 3):
            raise SystemExit(f"{command[0]} over ssh: exit {done.returncode}: {done.stdout[-500:]}")
        return took

    def over_paramiko(self, command: Sequence[str]) -> float:
        start = time.perf_counter()
        self.host.sh(shlex.join(command))
        return time.perf_counter() - start

    def cli_run(self) -> float:
        start = time.perf_counter()
        done = process.run([str(HOPNHAT), "backup", "run", "--system", CODE], env=self.env,
                           timeout=3600)
        took = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"hopnhat backup run: exit {done.returncode}: {done.stderr[-1500:]}")
        return took

    def first_backups(self) -> dict[str, list[float]]:
        """Each kind of first backup (into a repository emptied for it), in rounds."""
        host = self.host
        first_runs: dict[str, Callable[[], float]] = {
            "raw restic backup": lambda: host.timed(self.raw_backup),
            "job, backup only": lambda: host.timed(self.job_backup_only),
        }
        if self.prunes:
            first_runs[CONFIGURED] = lambda: host.timed(self.job)
        first: dict[str, list[float]] = {name: [] for name in first_runs}
        rounds = self.args.rounds if self.args.first_rounds is None else self.args.first_rounds
        for _ in range(max(1, rounds)):
            for name, measure in first_runs.items():
                self.empty_repository()
                first[name].append(measure())
        return first

    def changed_backups(self) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        """Each kind of 5 %-changed backup, in rounds. Out: their times, and the time each
        run that is not raw restic spent outside restic."""
        host = self.host
        changed_runs: dict[str, Callable[[], float]] = {
            "raw restic backup": lambda: host.timed(self.raw_backup),
            "job, backup only": lambda: host.timed(self.job_backup_only),
        }
        if self.prunes:
            changed_runs[RAW_FORGET] = lambda: (host.timed(self.raw_backup)
                                                + host.timed(self.raw_forget))
            changed_runs[CONFIGURED] = lambda: host.timed(self.job)
        changed_runs[OVER_SSH] = lambda: self.over_ssh(self.job_backup_only)
        changed_runs[CLI] = self.cli_run
        changed: dict[str, list[float]] = {name: [] for name in changed_runs}
        outside: dict[str, list[float]] = {name: [] for name in changed_runs
                                           if not name.startswith("raw")}
        self.empty_repository()
        host.timed(self.raw_backup)  # day 0: the parent snapshot of the first 5 %-changed run
        for _ in range(self.args.rounds):
            for name, measure in changed_runs.items():
                self.toggle()  # day 0 -> day 1: the same change for every kind of run
                host.restic_seconds()  # empties the log
                took = measure()
                changed[name].append(took)
                if name in outside:
                    outside[name].append(took - host.restic_seconds())
                self.toggle()  # and back, with a snapshot of day 0 as the next run's parent
                host.timed(self.raw_backup)
        return changed, outside

    def overheads(self) -> dict[str, Callable[[], float]]:
        """The fixed costs of triggering from the control host, each a measurement."""
        return {"SSH: connect and run `true` (OpenSSH, as backup run)":
                    lambda: self.over_ssh(["true"]),
                "SSH: connect and run `true` (paramiko, in-process)":
                    lambda: self.over_paramiko(["true"]),
                "hopnhat CLI start-up (`hopnhat --help`)": lambda: cli_help(self.env)}

    def profile_cli(self, profile: Path) -> None:
        """One ``hopnhat backup run`` under cProfile (saved to ``profile``), its top 30."""
        self.toggle()
        process.run([sys.executable, "-m", "cProfile", "-o", str(profile), str(HOPNHAT),
                     "backup", "run", "--system", CODE], env=self.env, timeout=3600, check=True)
        self.toggle()
        import pstats
        print(f"\none `hopnhat backup run` under cProfile ({profile}):")
        pstats.Stats(str(profile)).sort_stats("cumulative").print_stats(30)


def table(title: str, figures: dict[str, list[float]]) -> dict[str, float]:
    print(f"\n{title} (median of {len(next(iter(figures.values())))}; every run in s)")
    medians = {name: median(values) for name, values in figures.items()}
    for name, values in figures.items():
        print(f"  {name:<52} {medians[name]:7.2f}   "
              + " ".join(f"{v:.2f}" for v in values))
    return medians


def report(first: dict[str, list[float]], changed: dict[str, list[float]],
           outside: dict[str, list[float]], overhead: dict[str, list[float]],
           prunes: bool) -> None:
    """The tables of every run, and the ratios the issue asks about. ``prunes``: the job as
    configured runs forget --prune (sftp); else (rest) it is the backup alone, and its
    baseline raw backup."""
    one = table("first backup, empty repository", first)
    five = table("5 %-changed backup (day 0 -> day 1 each time)", changed)
    cost = table("time outside restic in the same run (the run's time - restic's own)",
                 outside)
    table("fixed costs of triggering from the control host", overhead)
    raw = five["raw restic backup"]
    as_configured, raw_configured = (("raw backup+forget", five[RAW_FORGET]) if prunes
                                     else ("raw backup", raw))
    print("\nratios")
    if not prunes:
        print("  (a rest client only adds: the job as configured is the backup alone, its "
              "baseline raw backup;\n   the control host prunes: bench/bench_maintain.py)")
    job = five["job, backup only"]
    for label, value, target in (
            ("first backup, job (backup only) / raw",
             one["job, backup only"] / one["raw restic backup"], ""),
            ("5 % changed, job (backup only) / raw, on the host", job / raw, "1.05"),
            ("5 % changed, job over SSH / raw on the host", five[OVER_SSH] / raw, "1.10"),
            *([("5 % changed, job as configured / raw backup+forget",
                five[CONFIGURED] / raw_configured, "")] if prunes else []),
            (f"5 % changed, hopnhat backup run / {as_configured}",
             five[CLI] / raw_configured, "1.10")):
        print(f"  {label + ':':<53} {value:.3f}" + (f"   target <= {target}" if target else ""))
    print(f"  {'job overhead on the host (backup only - raw):':<53} {job - raw:+.3f} s")
    print("\nratios from each run's own time outside restic (1 + median outside / median raw)")
    for name, base, target in (
            ("job, backup only", raw, "1.05"), (OVER_SSH, raw, "1.10"),
            *([(CONFIGURED, raw_configured, "")] if prunes else []),
            (CLI, raw_configured, "1.10")):
        print(f"  {name:<53} {1 + cost[name] / base:.3f}"
              + (f"   target <= {target}" if target else ""))


if __name__ == "__main__":
    main()
