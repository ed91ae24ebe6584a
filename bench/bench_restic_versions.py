"""Benchmark (issue 13): Debian's restic 0.14 beside the lab's pinned newer restic (0.18.x),
side by side in one run, on the same data, each against a fresh repository of its own on a
lab repository host over SFTP.

A lab of its own: one repository host (sshd with a chrooted SFTP account per restic version,
in its own mount namespace) for a copy of the example estate on other loopback addresses
(``127.171.x`` primary, ``127.172.x`` secondary by default), stopped by PID at the end, also
on Ctrl-C or SIGTERM. Nothing else of the lab runs: no vCenter, no VM guests. restic runs on
this machine, as the control host runs it for ``verify`` and drills (a lab VM is a mount
namespace of the same kernel, so a VM-side run would measure the same), with the adapter's
argv and environment (``orchestrator/adapters/restic_argv.py``): ``sftp.command`` is the ssh
argv ``actions/repositories.py`` builds (the account's own key, the host key pinned in the
lab's known_hosts, ``StrictHostKeyChecking=yes``), the password only as the path of a private
file in ``RESTIC_PASSWORD_FILE``.

The data: ``--size-mb`` MiB in ``--files`` files from the lab's generator
(``orchestrator/lab/data.py``), day 0, and day 1 (``change_rate`` 0.05: 5 % of the files
rewritten, added or deleted) for the "5 %-changed" run; both versions back up the very same
folder, warm in the page cache, each step preceded by an (untimed) ``sync``.

Measured (a timer around each restic process, in Python), per round and version, the two
versions' order alternating from round to round:
  first backup (the repository emptied and initialised, restic's cache emptied: untimed) —
  5 %-changed backup (day 1 on top of that first snapshot) — ``check`` (structure, as the
  adapter runs it) — ``restore latest --verify`` into a temporary folder (removed after);
and then, in the same round, the first backup again through the lab's link to the secondary
site slowed to 1 Gbit/s (``orchestrator/lab/link.py``: an HTB class on ``lo`` for the
secondary site's subnets, both directions in one class) with 5 ms of latency where the kernel
has netem — where it has not (detected as tests/integration/test_lab_link.py does), the
latency is not emulated and the output says so — versus that round's loopback first backup.
The link is restored right after, whatever happens.

Prints one table (step x version, medians of ``--rounds``; the ratio newer/0.14; the
link/loopback ratio per version), every run's figure, one line per step saying which version
is faster and by how much, the repository format each version created (``cat config``) and
the repository's size after the first backup. Asserts nothing.

    .venv/bin/python bench/bench_restic_versions.py [--size-mb 1024] [--files 2100]
        [--rounds 3] [--octets 171,172]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator import process  # noqa: E402
from orchestrator.adapters.restic_argv import (  # noqa: E402
    Repository,
    make_backup_argv,
    make_check_argv,
    make_environment,
    make_init_argv,
    make_restore_argv,
    parse_version,
    ssh_command,
)
from orchestrator.adapters.ssh import ensure_keypair  # noqa: E402
from orchestrator.errors import LabError  # noqa: E402
from orchestrator.estate import load_estate  # noqa: E402
from orchestrator.lab import control, data, gobuild, link  # noqa: E402
from orchestrator.lab.guest_init import account_name  # noqa: E402
from orchestrator.lab.processes import ProcessTable  # noqa: E402
from orchestrator.lab.repository import (  # noqa: E402
    repository_dir,
    repository_url,
    start_repository_host,
)
from orchestrator.settings import Paths  # noqa: E402

DEBIAN_RESTIC = "/usr/bin/restic"
LATENCY = "5ms"
CLIENT = "bench-client"  # restic's --host: the snapshots' host, so day 1 finds day 0's parent
TIMEOUT = 3 * 3600.0

FIRST, CHANGED, CHECK, RESTORE, LINK = ("first backup", "5 %-changed backup", "check",
                                        "restore --verify", "first backup, slowed link")
STEPS = (FIRST, CHANGED, CHECK, RESTORE, LINK)


def bench_estate(dest: Path, octets: tuple[str, str]) -> Path:
    """The example estate on ``127.<octets>`` (its vault left out: nothing here reads it)."""
    shutil.copytree(REPO / "inventory", dest, ignore=shutil.ignore_patterns("secrets.vault.yml"))
    for path in dest.rglob("*.yml"):
        text = path.read_text().replace("127.10.", f"127.{octets[0]}.")
        path.write_text(text.replace("127.20.", f"127.{octets[1]}."))
    return dest


def kernel_has_netem() -> bool:
    """Whether tc can make a netem qdisc (tried on the loopback of a network namespace of
    its own, which vanishes with the command: nothing of this machine is touched)."""
    done = process.run(["unshare", "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                        "delay", "1ms"], timeout=30)
    return done.ok


@dataclass
class Restic:
    """One restic version and its own repository (an account of its own on the host)."""

    binary: str
    version: str  # "0.14.0"
    banner: str  # restic's whole `version` line
    repo: Repository
    storage: Path  # the repository's folder on this machine (the host's storage is on disk)
    env: dict[str, str]
    times: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})

    @property
    def label(self) -> str:
        return f"restic {self.version}"

    def run(self, argv: Sequence[str], what: str) -> tuple[float, str]:
        """Run the adapter's ``argv`` with this binary in its place; (seconds, stdout).
        Any exit but 0 ends the benchmark with restic's last words."""
        argv = [self.binary, *argv[1:]]
        start = time.perf_counter()
        done = subprocess.run(argv, env=self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=TIMEOUT, check=False)
        took = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{self.label}: {what}: exit {done.returncode}: "
                             f"{done.stderr.strip()[-1500:]}")
        return took, done.stdout

    def empty(self) -> None:
        """An empty repository (initialised, untimed) and an empty cache."""
        for child in self.storage.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        assert self.repo.cache_dir is not None
        shutil.rmtree(self.repo.cache_dir, ignore_errors=True)
        self.run(make_init_argv(self.repo), "init")

    def backup(self, source: Path) -> tuple[float, dict[str, object]]:
        took, out = self.run(make_backup_argv(self.repo, [str(source)], ["system=bench"],
                                              host=CLIENT), "backup")
        summary: dict[str, object] = {}
        for line in reversed(out.splitlines()):
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if isinstance(doc, dict) and doc.get("message_type") == "summary":
                    summary = doc
                    break
        return took, summary

    def repository_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.storage.rglob("*") if p.is_file())

    def repository_format(self) -> str:
        _, out = self.run([*make_init_argv(self.repo)[:-1], "cat", "config"], "cat config")
        config = json.loads(out)
        return f"format v{config.get('version')}"


def rate_bits(rate: str) -> float:
    """``1gbit`` → 1e9 (tc's units: bits per second, SI prefixes)."""
    value = link.check_rate(rate)
    unit = re.sub(r"^[\d.]+", "", value)
    scale = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12}[unit]
    return float(value.removesuffix(unit)) * scale


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def mib(count: object) -> str:
    return f"{int(count) / 1024 / 1024:,.1f} MiB" if isinstance(count, int | float) else "?"


@contextlib.contextmanager
def stopped_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end the run as Ctrl-C does, so every ``finally`` runs."""
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def repository_lab(base: Path, octets: tuple[str, str], codes: list[str]
                   ) -> Iterator[tuple[Paths, str, int]]:
    """The estate's (first) repository host alone, one SFTP account per code in ``codes``;
    stopped by PID (and the link restored) at the end whatever happens. Yields the paths
    and the host's address and port."""
    paths = Paths(base / "state", load_estate(bench_estate(base / "inventory", octets)))
    paths.lab.mkdir(parents=True)
    built = REPO / ".hopnhat" / "lab" / "bin"
    if built.is_dir():  # the pinned restic, when `make` built it already
        shutil.copytree(built, gobuild.bin_dir(paths.lab),
                        ignore=shutil.ignore_patterns(".*.tmp"))
    control_pub = ensure_keypair(paths.private_key, "hopnhat@bench").read_text().strip()
    paths.known_hosts.parent.mkdir(parents=True, exist_ok=True)
    paths.known_hosts.touch(mode=0o644)
    keys = {code: ensure_keypair(paths.repository_key(code), f"restic-{code}@bench")
            .read_text().strip() for code in codes}
    host = paths.estate.settings.repository_hosts[0]
    try:
        start_repository_host(paths.lab, ProcessTable(paths.lab), host.name, host.name,
                              str(host.address), host.storage_path, [control_pub],
                              paths.known_hosts, keys, port=host.port)
        yield paths, str(host.address), host.port
    finally:
        control.down(paths.lab)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=1024)
    parser.add_argument("--files", type=int, default=2100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--link-rate", default="1gbit",
                        help="the slowed link's rate (the issue's: 1gbit)")
    parser.add_argument("--octets", default=os.environ.get("HOPNHAT_BENCH_OCTETS", "171,172"),
                        help="second octets of the lab's primary and secondary addresses")
    args = parser.parse_args(argv)
    first_octet, second_octet = args.octets.split(",")
    try:
        link.check_rate(args.link_rate)
    except LabError as exc:
        parser.error(str(exc))
    if os.geteuid() != 0:
        raise SystemExit("the lab needs root (mount namespaces, sshd, tc)")
    started = time.perf_counter()
    with stopped_on_signals(), tempfile.TemporaryDirectory(
            prefix="hopnhat-bench-restic-") as tmp:
        base = Path(tmp)
        try:
            run(base, (first_octet, second_octet), args)
        except KeyboardInterrupt:
            print("\ninterrupted: the lab is stopped and the link restored", file=sys.stderr)
            raise SystemExit(130) from None
    print(f"\nthe whole run took {time.perf_counter() - started:.0f} s")


def binaries(lab_dir: Path) -> list[tuple[str, str]]:
    """(binary, `version` line) of Debian's restic and the lab's pinned one, oldest first."""
    found = []
    for binary in (DEBIAN_RESTIC, str(gobuild.build(lab_dir, gobuild.RESTIC))):
        done = process.run([binary, "version"], timeout=60)
        if not done.ok:
            raise SystemExit(f"{binary} version: exit {done.returncode}")
        found.append((binary, done.stdout.strip()))
    return sorted(found, key=lambda b: parse_version(b[1]))


def run(base: Path, octets: tuple[str, str], args: argparse.Namespace) -> None:
    started = time.perf_counter()
    # the codes name each version's account; the versions are read once the lab has built
    # the pinned restic, so the accounts are named by role first
    codes = ["bench-debian", "bench-pinned"]
    with repository_lab(base, octets, codes) as (paths, address, port):
        try:
            found = binaries(paths.lab)
        except LabError as exc:
            raise SystemExit(f"the pinned restic cannot be built: {exc}") from exc
        host = paths.estate.settings.repository_hosts[0]
        versions = restic_versions(paths, base, list(zip(codes, found, strict=True)),
                                   address, port)
        source = base / "data" / "srv" / "bench"
        seed = f"{paths.estate.id}/bench-restic-versions"

        def day(n: int) -> data.DataSummary:
            return data.generate(source, seed=seed, size_mb=args.size_mb, files=args.files,
                                 day=n, change_rate=0.05)

        summary = day(0)
        netem = kernel_has_netem()
        latency: str | None = LATENCY if netem else None
        print(f"lab ready in {time.perf_counter() - started:.0f} s: repository host "
              f"{host.name} at {address}:{port} (SFTP, host key pinned), "
              f"{summary.files} files, {mib(summary.bytes)}, {os.cpu_count()} cores")
        for v in versions:
            print(f"  {v.label}: {v.binary} ({v.banner})")
        print(f"  link: {args.link_rate}" + (f", {LATENCY} latency (netem)" if netem else
              " only: this kernel has no netem (CONFIG_NET_SCH_NETEM), so the 5 ms latency "
              "could not be emulated on this machine"))

        formats: dict[str, str] = {}
        first_summary: dict[str, dict[str, object]] = {}
        changed_summary: dict[str, dict[str, object]] = {}
        sizes: dict[str, int] = {}
        link_bytes: dict[str, list[int]] = {v.version: [] for v in versions}
        for r in range(args.rounds):
            order = versions if r % 2 == 0 else versions[::-1]
            for v in order:  # first backup, loopback
                v.empty()
                os.sync()
                took, result = v.backup(source)
                v.times[FIRST].append(took)
                first_summary[v.version] = result
                sizes[v.version] = v.repository_bytes()
                if v.version not in formats:
                    formats[v.version] = v.repository_format()
            day(1)
            changed_summary.update(changed_check_restore(order, source, base))
            day(0)
            latency = slowed_first_backups(paths, order, source, args.link_rate, latency,
                                           link_bytes)
            print(f"  round {r + 1}/{args.rounds} done at "
                  f"{time.perf_counter() - started:.0f} s", flush=True)

        report(versions, args, latency, netem, formats, sizes, first_summary, changed_summary,
               link_bytes)


def restic_versions(paths: Paths, base: Path, found: list[tuple[str, tuple[str, str]]],
                    address: str, port: int) -> list[Restic]:
    """Each restic of ``found`` (account code, (binary, `version` line)) with a repository
    of its own on the lab's repository host, one password for all."""
    host = paths.estate.settings.repository_hosts[0]
    password_file = paths.state / "restic-password"
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32))
    scratch = base / "tmp"
    scratch.mkdir()
    versions: list[Restic] = []
    for code, (binary, banner) in found:
        user = account_name(code)
        repo = Repository(
            url=repository_url(address, code, port), password_file=password_file,
            sftp_command=ssh_command(f"{user}@{address}", paths.repository_key(code),
                                     paths.known_hosts, port=port),
            cache_dir=base / "cache" / code, name=f"{code}@{host.name}")
        env = make_environment(repo, path=os.environ.get("PATH", "/usr/bin:/bin"),
                               home=str(paths.state), tmpdir=str(scratch))
        version = ".".join(str(n) for n in parse_version(banner))
        versions.append(Restic(binary, version, banner, repo,
                               repository_dir(paths.lab, host.name, host.storage_path, code),
                               env))
    return versions


def changed_check_restore(order: list[Restic], source: Path, base: Path
                          ) -> dict[str, dict[str, object]]:
    """After the first backups, over loopback: each version's backup of the changed day,
    its check, and its restore of the latest snapshot (each timed). Out: the changed
    backups' summaries by version."""
    changed_summary: dict[str, dict[str, object]] = {}
    for v in order:
        os.sync()
        took, result = v.backup(source)
        v.times[CHANGED].append(took)
        changed_summary[v.version] = result
    for v in order:
        os.sync()
        v.times[CHECK].append(v.run(make_check_argv(v.repo), "check")[0])
    for v in order:
        target = base / "restore" / v.version
        os.sync()
        v.times[RESTORE].append(v.run(make_restore_argv(
            v.repo, "latest", target, verify=True, host=CLIENT), "restore")[0])
        shutil.rmtree(target)
    return changed_summary


def class_bytes(lab_dir: Path) -> int:
    """Bytes the lab's own HTB class on ``lo`` has let through (both directions): proof
    that the backup's traffic really crossed the slowed link."""
    classid = f"1:{link.class_minor(lab_dir):x}"
    done = process.run(["tc", "-s", "class", "show", "dev", link.DEVICE, "classid", classid],
                       timeout=30)
    found = re.search(r"Sent (\d+) bytes", done.stdout)
    return int(found.group(1)) if done.ok and found else 0


def slowed_first_backups(paths: Paths, order: list[Restic], source: Path, rate: str,
                         latency: str | None, link_bytes: dict[str, list[int]]) -> str | None:
    """Each version's first backup through the link slowed to ``rate`` (and ``latency``); the
    link restored after, whatever happens. Returns the latency really applied."""
    for v in order:  # the repository initialised at loopback speed: only the backup is timed
        v.empty()
    try:
        try:
            link.slow(paths.lab, paths.estate, rate, latency)
        except LabError as exc:
            if latency is None or "netem" not in str(exc):
                raise
            print(f"  the link refused the latency ({exc}): {rate} alone", flush=True)
            latency = None
            link.slow(paths.lab, paths.estate, rate, None)
        for v in order:
            os.sync()
            before = class_bytes(paths.lab)
            v.times[LINK].append(v.backup(source)[0])
            link_bytes[v.version].append(class_bytes(paths.lab) - before)
    finally:
        try:
            link.restore(paths.lab)
        except LabError as exc:  # lab down (at the end) tries again
            print(f"  the link could not be restored yet: {exc}", file=sys.stderr)
    return latency


def report(versions: list[Restic], args: argparse.Namespace, latency: str | None, netem: bool,
           formats: dict[str, str], sizes: dict[str, int],
           first_summary: dict[str, dict[str, object]],
           changed_summary: dict[str, dict[str, object]],
           link_bytes: dict[str, list[int]]) -> None:
    old, new = versions
    rate = args.link_rate
    link_name = f"first backup, link {rate}" + (f" + {latency}" if latency else "")
    names = {FIRST: "first backup (loopback)", CHANGED: CHANGED, CHECK: CHECK,
             RESTORE: RESTORE, LINK: link_name}
    med = {v.version: {s: median(v.times[s]) for s in STEPS} for v in versions}
    width = 34
    print(f"\nrestic versions, {args.size_mb:g} MiB in {args.files} files, SFTP to the lab's "
          f"repository host (median of {args.rounds}; seconds)")
    print(f"  {'step':<{width}} {old.label:>14} {new.label:>14} "
          f"{new.version + '/' + old.version:>14}")
    for step in STEPS:
        a, b = med[old.version][step], med[new.version][step]
        print(f"  {names[step]:<{width}} {a:14.2f} {b:14.2f} {b / a:14.3f}")
    ratio = {v.version: med[v.version][LINK] / med[v.version][FIRST] for v in versions}
    print(f"  {'link / loopback (first backup)':<{width}} {ratio[old.version]:14.3f} "
          f"{ratio[new.version]:14.3f} {ratio[new.version] / ratio[old.version]:14.3f}")
    if not latency:
        why = "this kernel has no netem" if not netem else "the link refused it"
        print(f"  (the link: {rate} only; the {LATENCY} latency could not be emulated on this "
              f"machine: {why})")

    print("\nevery run (s)")
    for step in STEPS:
        for v in versions:
            print(f"  {names[step]:<{width}} {v.label:<14} "
                  + " ".join(f"{t:.2f}" for t in v.times[step]))

    print("\nwhich version is faster")
    for step in STEPS:
        a, b = med[old.version][step], med[new.version][step]
        fast, slow_ = (new, old) if b < a else (old, new)
        f_t, s_t = min(a, b), max(a, b)
        overlap = max(fast.times[step]) >= min(slow_.times[step])
        print(f"  {names[step]}: {fast.label} is faster by {s_t - f_t:.2f} s "
              f"({(s_t - f_t) / s_t * 100:.1f} % less time; {slow_.label} takes "
              f"{s_t / f_t:.2f}x as long)"
              + ("  [the runs overlap: within run-to-run spread]" if overlap else ""))

    print("\nrepositories")
    for v in versions:
        first, changed = first_summary[v.version], changed_summary[v.version]
        packed = first.get("data_added_packed")
        wire = median([float(n) for n in link_bytes[v.version]])
        floor = wire * 8 / rate_bits(rate)
        print(f"  {v.label}: {formats[v.version]} (restic's `cat config`; compression "
              f"auto, the default for v2); after the first backup {mib(sizes[v.version])} on "
              f"the host (data added {mib(first.get('data_added'))}"
              + (f", packed {mib(packed)}" if packed is not None else "")
              + f"); the 5 %-changed backup added {mib(changed.get('data_added'))}")
        print(f"  {'':{len(v.label)}}  the slowed link's class carried {mib(wire)} (both "
              f"directions) in its first backup: at least {floor:.2f} s at {rate}; "
              f"{wire * 8 / 1e6 / med[v.version][LINK]:.0f} Mbit/s on average over the backup")


if __name__ == "__main__":
    main()
