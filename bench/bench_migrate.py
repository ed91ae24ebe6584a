"""Benchmark (issue 17): ``hopnhat migrate``'s restore, manifest check and sync against the
physical bounds measured in the same run — locally, without the lab (no VMs, no SSH).

The data: ``orchestrator.lab.data.generate`` (the generator of the other benchmarks: a
document store, sizes roughly log-normal — many small files, a few large ones — in nested
folders, incompressible bytes, ``app.db``), ``--files`` files in all (app.db included) and
``--size-mib`` MiB, deterministic from ``--seed``, under ``<tmp>/src/srv/bench``. It is
backed up (``cd <tmp>/src && restic backup -- srv/bench``: the snapshot holds
``/srv/bench``, the backup path of a system on its VM) to a local repository in ``<tmp>``
(password in a private file, only its path in ``RESTIC_PASSWORD_FILE``); then day 1 of the
same data set (``change_rate`` 0.01: about 1 % of the files rewritten, added or deleted, and
app.db rewritten) is backed up again. Generation and backups are not timed in any ratio.

Then, for each restic (``--restic``; by default the lab's pinned 0.18.1, which has
``restore --delete``, and Debian's 0.14.0, which has not), in that restic's own cache (warmed
before), with restic's whole environment from ``make_environment`` (nothing inherited) and
``--no-lock`` on every read as the migration runs them (``drill_remote.read_only``):

1. **restore** (the ``restore`` step of ``migrate run``): the argv of
   ``orchestrator.actions.migrate.run.restore_argv`` exactly — 0.17+: ``restore
   <id>:/srv/bench --target /srv/bench --verify --delete``; older: ``restore <id> --target /
   --verify`` — with only the target moved below an empty scratch root ``<tmp>/target-<v>``
   (``/srv/bench`` → ``<root>/srv/bench``, ``/`` → ``<root>``); against the physical bound,
   a raw ``restic restore <id> --target <empty folder>`` (no ``--verify``). The migration
   restores with ``--verify`` (it proves the bytes), so its ratio includes restic reading
   every restored file back: the same raw restore with ``--verify`` is timed too, and the
   migration's argv without ``--verify`` (unless ``--no-reference``);
2. **manifest check** (the ``check`` step) over the tree the migration restored:
   ``restic ls --json`` of the snapshot parsed line by line (``parse_ls_line`` +
   ``manifest.from_node``), ``orchestrator/actions/migrate/tree.py`` run as the migration
   runs it (``python3 -c <its text> <json>``, mode scan with SHA-256 — the distribution's
   ``/usr/bin/python3``, as on a VM — its JSON lines parsed into ``manifest.from_scan`` as they
   come; the scratch root is cut off each path, the only change), the listing-based deletion
   and a rescan when the tree holds entries the snapshot lacks, ``manifest.compare``,
   ``manifest.totals``, ``manifest.changes`` against the previous manifest (a sync) and the
   manifest written (``manifest.lines`` + ``manifest.write``); against the physical bound,
   ``find <tree> -type f -print0 | xargs -0 sha256sum`` over the same tree (one sha256sum
   process at a time; a pipe of two argv lists, no shell), its sums kept and compared with
   the manifest's. coreutils' sha256sum (9.1 here) has no SHA-NI code and hashes several
   times slower than OpenSSL, which Python's hashlib (so tree.py) uses: the same pipe with
   ``openssl dgst -sha256`` is timed too, the stricter bound for hashing the same bytes;
3. **sync after ~1 % change** (``migrate sync``): the same ``restore_argv`` for the day-1
   snapshot over the tree of step 1 (0.17+: ``--delete`` removes what the snapshot lacks;
   0.14: a whole restore, then the check deletes the extra entries it lists), then the
   manifest check again; against a raw ``restic restore`` of the day-1 snapshot into an empty
   folder (and the sha256sum of the synced tree for the check).

Every timed step starts after an untimed ``sync(2)`` (no dirty pages of the step before are
written back inside it) and runs warm-cache: the page cache is never dropped, and before every
timed restore the repository's files are read once (untimed), so restores read their packs
from memory as far as they fit (at 10 GiB the source, the repository and two trees outgrow a
23 GiB machine's memory, and part of the reads may go to disk, for baseline and measured
alike). Each figure is the best (minimum) of ``--rounds``
rounds, every run printed beside it (the best is the run least disturbed by anything else on
the machine; the 1-minute load average at the start and the end is printed too); the baseline
and the migration's step run in one order in even rounds and the reverse in odd ones, so
neither always runs first. A sync round after the first starts from the tree of step 1 made
again (untimed). Fixed overhead (provision + configure + probes) needs VMs: not measured here;
``--from-evidence PATH`` prints it from a migration's ``evidence.json`` (its ``steps``).

Targets (issue 17): restore ≤ 1.10x raw restic; manifest check ≤ 1.20x sha256sum of the same
bytes; a sync's restore after 1 % change ≤ 1.2x a raw restore of that snapshot. Prints the
figures and ratios (``--json``: one JSON document instead); asserts nothing timed; exits 0
unless the benchmark itself cannot run.

    .venv/bin/python bench/bench_migrate.py [--files 2100] [--size-mib 1024] [--seed 1]
        [--rounds 3] [--restic PATH ...] [--no-reference] [--tmp DIR] [--keep] [--json]
        [--from-evidence PATH]
    .venv/bin/python bench/bench_migrate.py --preset 10g    # 21,000 files, 10 GiB, 1 round
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator import process  # noqa: E402
from orchestrator.actions.drill.remote import read_only  # noqa: E402
from orchestrator.actions.migrate import manifest  # noqa: E402
from orchestrator.actions.migrate.run import (  # noqa: E402
    DELETE_SINCE,
    TREE_SCRIPT,
    restore_argv,
)
from orchestrator.adapters.restic_argv import (  # noqa: E402
    Repository,
    make_backup_argv,
    make_environment,
    make_init_argv,
    make_ls_argv,
    make_restore_argv,
    make_snapshots_argv,
    parse_version,
)
from orchestrator.adapters.restic_results import parse_ls_line  # noqa: E402
from orchestrator.lab import data  # noqa: E402

PINNED = REPO / ".hopnhat" / "lab" / "bin" / "restic-0.18.1"
DEBIAN = Path("/usr/bin/restic")
#: the VM's python3 runs tree.py in a migration; the distribution's is the closest here
PYTHON3 = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else "python3"
ROOTS = ("/srv/bench",)  # the system's backup paths, as on its VM
VM = "bench-target"
CHANGE_RATE = 0.01
PRESETS = {"1g": (2100, 1024, 3), "10g": (21000, 10240, 1)}  # files, MiB, rounds
TARGET_RESTORE, TARGET_CHECK, TARGET_SYNC = 1.10, 1.20, 1.2
FIXED_STEPS = ("provision", "configure", "probes")
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
GIB = 1 << 30


def say(text: str) -> None:
    """Progress, on stderr (stdout carries the table or the JSON document)."""
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- restic and the repository


@dataclass(frozen=True)
class Restic:
    path: str
    version: tuple[int, int, int]

    @property
    def label(self) -> str:
        return ".".join(str(n) for n in self.version)

    @property
    def delete(self) -> bool:
        """Whether a migration restores with ``--delete`` (restic 0.17+)."""
        return self.version >= DELETE_SINCE


def restic_of(path: str) -> Restic:
    done = process.run([path, "version"], timeout=60, check=True)
    return Restic(path, parse_version(done.stdout))


@dataclass
class Lab:
    """The temporary folder: source data, repository, scratch roots."""

    base: Path
    repo: Repository
    home: Path
    tmpdir: Path

    @property
    def src(self) -> Path:
        return self.base / "src"

    def repository(self, restic: Restic) -> Repository:
        """The repository as ``restic`` opens it: a cache of that version's own."""
        return replace(self.repo, cache_dir=self.base / f"cache-{restic.label}")

    def env(self, restic: Restic) -> dict[str, str]:
        return make_environment(self.repository(restic), path=PATH, home=str(self.home),
                                tmpdir=str(self.tmpdir))

    def program(self, restic: Restic, argv: Sequence[str]) -> tuple[str, ...]:
        """``argv`` (from the adapter, starting ``restic``) with this program."""
        return (restic.path, *argv[1:])

    def argv(self, restic: Restic, argv: Sequence[str]) -> tuple[str, ...]:
        """``argv`` (from the adapter, starting ``restic``) with this program and
        ``--no-lock``, as ``remote_command`` runs a migration's reads."""
        return (restic.path, *read_only(argv)[1:])

    def run(self, restic: Restic, argv: Sequence[str], cwd: Path | None = None
            ) -> process.Completed:
        done = process.run(argv, env=self.env(restic), inherit_env=False, timeout=None,
                           cwd=cwd)
        if not done.ok:
            raise SystemExit(f"{' '.join(argv[:4])}… exited {done.returncode}: "
                             f"{(done.stderr or done.stdout).strip()[-500:]}")
        return done


def make_lab(base: Path) -> Lab:
    secret = base / "password"
    secret.write_text(os.urandom(24).hex() + "\n")
    secret.chmod(0o600)
    for sub in ("home", "tmp"):
        (base / sub).mkdir()
    return Lab(base, Repository(url=str(base / "repo"), password_file=secret, name="bench"),
               base / "home", base / "tmp")


def backup(lab: Lab, restic: Restic) -> tuple[str, float]:
    """``restic backup --json -- srv/bench`` from ``<tmp>/src``. Out: (snapshot id, s)."""
    argv = lab.program(restic, make_backup_argv(lab.repository(restic), ["srv/bench"],
                                                host="bench-source"))
    t = time.perf_counter()
    done = lab.run(restic, argv, cwd=lab.src)
    seconds = time.perf_counter() - t
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{") and '"summary"' in line:
            return str(json.loads(line)["snapshot_id"]), seconds
    raise SystemExit(f"restic backup printed no summary: {done.stdout[-300:]}")


# ---------------------------------------------------------------- timing helpers


def fresh(path: Path) -> Path:
    """``path`` removed (untimed) so that a restore starts from nothing."""
    shutil.rmtree(path, ignore_errors=True)
    return path


def warm(folder: Path) -> None:
    """Read every file below ``folder`` (untimed): before each restore the repository's
    packs are the most recently used pages, whatever ran before (a restore of 10 GiB reads
    its packs from memory as far as they fit, for baseline and measured alike)."""
    buf = bytearray(1 << 20)
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            with open(os.path.join(dirpath, name), "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass


def timed(step: Callable[[], Any], repository: Path | None = None) -> tuple[float, Any]:
    """``step()`` after an untimed read of ``repository`` (a restore) and an untimed
    sync(2): (seconds, its result)."""
    if repository is not None:
        warm(repository)
    os.sync()
    t = time.perf_counter()
    out = step()
    return time.perf_counter() - t, out


def retarget(argv: Sequence[str], root: Path) -> tuple[str, ...]:
    """A migration's restore argv with its ``--target`` moved below the scratch ``root``."""
    i = list(argv).index("--target")
    target = argv[i + 1]
    moved = str(root) if target == "/" else str(root) + target
    return (*argv[: i + 1], moved, *argv[i + 2:])


def alternate(r: int, steps: list[Callable[[], None]]) -> None:
    """Run ``steps`` in order in even rounds, reversed in odd ones."""
    for step in steps if r % 2 == 0 else list(reversed(steps)):
        step()


# ---------------------------------------------------------------- the measured pieces


def migration_restore(lab: Lab, restic: Restic, snapshot: str, root: Path, *,
                      verify: bool = True) -> tuple[float, list[tuple[str, ...]]]:
    """The restore step: every argv of ``restore_argv`` with its target below ``root``.
    Out: (seconds, the argv run)."""
    repo = lab.repository(restic)
    commands = []
    for argv in restore_argv(restic.path, repo, snapshot, ROOTS, restic.delete):
        moved = retarget(argv, root)
        if not verify:
            moved = tuple(a for a in moved if a != "--verify")
        commands.append(lab.argv(restic, ("restic", *moved[1:])))

    fix: list[str] = []
    if restic.delete:  # as run._root_metadata: the backup paths' own owner, mode and mtime
        roots = {p: e for p, e in listing(lab, restic, snapshot).items() if p in ROOTS}
        meta = {str(root) + p: {"m": e.mode, "u": None, "g": None, "n": e.mtime_ns}
                for p, e in roots.items()}
        fix = tree_argv({"mode": "meta", "paths": list(meta), "meta": meta})

    def run_all() -> list[str]:
        outputs = [_output(lab.run(restic, argv)) for argv in commands]
        if fix:
            done = process.run(fix, env={"PATH": PATH}, inherit_env=False, timeout=600)
            if json.loads(done.stdout.strip().splitlines()[-1]).get("errors"):
                say(f"WARNING: tree.py meta: {done.stdout.strip()[-300:]}")
        return outputs

    seconds, outputs = timed(run_all, Path(repo.url))
    if verify and not all("finished verifying" in out for out in outputs):
        say(f"WARNING: restic {restic.label}: a restore did not report its verification "
            "(the migration would fail its restore step)")
    return seconds, commands


def _output(done: process.Completed) -> str:
    return done.stdout + done.stderr  # the migration reads restic's 2>&1


def raw_restore(lab: Lab, restic: Restic, snapshot: str, target: Path, *,
                verify: bool = False) -> float:
    """The physical bound: ``restic restore <id> --target <empty folder>``."""
    argv = lab.argv(restic, make_restore_argv(lab.repository(restic), snapshot, target,
                                              verify=verify))
    seconds, _ = timed(lambda: lab.run(restic, argv), Path(lab.repo.url))
    return seconds


HASHERS = {"sha256sum": ("sha256sum",), "openssl": ("openssl", "dgst", "-sha256", "-r")}


def hash_tree(tree: Path, out: Path, hasher: str = "sha256sum") -> float:
    """``find TREE -type f -print0 | xargs -0 HASHER > OUT`` (two argv lists joined by a
    pipe, no shell; xargs runs one hasher process at a time). Out: seconds."""
    env = {"PATH": PATH, "LC_ALL": "C"}

    def run() -> None:
        with out.open("wb") as sink:
            find = subprocess.Popen(["find", str(tree), "-type", "f", "-print0"],
                                    stdout=subprocess.PIPE, env=env)
            assert find.stdout is not None
            xargs = subprocess.Popen(["xargs", "-0", *HASHERS[hasher]], stdin=find.stdout,
                                     stdout=sink, env=env)
            find.stdout.close()
            if xargs.wait() != 0 or find.wait() != 0:
                raise SystemExit(f"find | xargs {hasher} over {tree} failed")

    seconds, _ = timed(run)
    return seconds


def sums_of(out: Path, root: Path) -> dict[str, str]:
    """sha256sum's (or ``openssl dgst -r``'s) output → path (the scratch root cut off) →
    SHA-256."""
    cut = len(str(root))
    return {line[66:][cut:]: line[:64] for line in out.read_text().splitlines()}


def tree_argv(args: dict[str, Any]) -> list[str]:
    """What ``run.tree_command`` has a VM's shell run, as an argv."""
    return [PYTHON3, "-c", TREE_SCRIPT.read_text(), json.dumps(args)]


@dataclass
class Check:
    """One manifest check (``run._check`` + the step's manifest writing), its parts timed."""

    seconds: float = 0.0
    ls: float = 0.0
    scan: float = 0.0
    delete: float = 0.0  # deletion of the extra entries + the rescan (restic without --delete)
    compare: float = 0.0  # compare + totals + changes + manifest lines and write
    entries: int = 0
    deleted: int = 0
    extra: int = 0  # entries the tree held that the snapshot lacks
    differences: dict[str, Any] = field(default_factory=dict)
    sentences: list[str] = field(default_factory=list)
    changes: dict[str, int] | None = None
    manifest_sha256: str = ""
    found: dict[str, manifest.Entry] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "ls": self.ls, "scan": self.scan,
                "delete_and_rescan": self.delete, "compare_and_write": self.compare,
                "entries": self.entries, "extra": self.extra, "deleted": self.deleted,
                "differences": self.differences, "changes": self.changes,
                "manifest_sha256": self.manifest_sha256}


def listing(lab: Lab, restic: Restic, snapshot: str) -> dict[str, manifest.Entry]:
    """``run._listing``: the snapshot's entries under the roots."""
    out: dict[str, manifest.Entry] = {}
    prefixes = tuple(r.rstrip("/") + "/" for r in ROOTS)

    def each(line: str) -> None:
        node = parse_ls_line(line)
        if node is not None and (node.path in ROOTS or node.path.startswith(prefixes)):
            out[node.path] = manifest.from_node(node)

    argv = lab.argv(restic, make_ls_argv(lab.repository(restic), snapshot))
    done = process.stream(argv, on_line=each, env=lab.env(restic), inherit_env=False)
    if done.returncode != 0:
        raise SystemExit(f"restic ls {snapshot[:8]}: {done.stderr.strip()[-300:]}")
    return out


def scan(root: Path, hashes: bool = True) -> dict[str, manifest.Entry]:
    """``run.scan`` (with hashes unless told), over the roots below the scratch ``root``."""
    entries: dict[str, manifest.Entry] = {}
    end: dict[str, Any] = {}
    cut = len(str(root))

    def each(line: str) -> None:
        if not line.startswith("{"):
            return
        d = json.loads(line)
        if "end" in d:
            end.update(d)
        else:
            d["p"] = d["p"][cut:]
            entry = manifest.from_scan(d)
            entries[entry.path] = entry

    args = {"mode": "scan", "paths": [str(root) + r for r in ROOTS], "hash": hashes}
    done = process.stream(tree_argv(args), on_line=each, env={"PATH": PATH},
                          inherit_env=False)
    if done.returncode != 0 or not end:
        raise SystemExit(f"tree.py scan failed: {done.stderr.strip()[-300:]}")
    return entries


def check(lab: Lab, restic: Restic, snapshot: str, root: Path, out: Path,
          previous: Path | None) -> Check:
    """The check step over the tree below ``root`` (writes the manifest to ``out``)."""
    result = Check()
    os.sync()
    t0 = time.perf_counter()
    wanted = listing(lab, restic, snapshot)
    t1 = time.perf_counter()
    found = scan(root)
    t2 = time.perf_counter()
    extra = sorted((p for p in found if p not in wanted and p not in ROOTS),
                   key=lambda p: (-p.count("/"), p))
    result.extra = len(extra)
    if extra:
        args = {"mode": "delete", "paths": [str(root) + r for r in ROOTS]}
        done = process.run(tree_argv(args), input="".join(json.dumps(str(root) + p) + "\n"
                                                          for p in extra),
                           env={"PATH": PATH}, inherit_env=False, timeout=3600)
        report = json.loads(done.stdout.strip().splitlines()[-1])
        result.deleted = int(report.get("deleted", 0))
        if report.get("errors"):
            say(f"WARNING: tree.py delete: {report['errors'][:3]}")
        # as run._check: what is left, without hashing again (kept files were just hashed)
        hashed, found = found, scan(root, hashes=False)
        found = {p: replace(e, sha256=hashed[p].sha256) if p in hashed else e
                 for p, e in found.items()}
    t3 = time.perf_counter()
    differences = manifest.compare(wanted, found)
    manifest.totals(found.values(), ROOTS)
    if previous is not None:
        result.changes = manifest.changes(manifest.read(previous).get(VM, {}), found).counts
    result.manifest_sha256 = manifest.write(out, manifest.lines(VM, found))
    t4 = time.perf_counter()
    result.seconds, result.ls, result.scan = t4 - t0, t1 - t0, t2 - t1
    result.delete, result.compare = t3 - t2, t4 - t3
    result.entries, result.found = len(found), found
    result.differences = differences.as_dict()
    result.sentences = differences.sentences(VM)
    return result


def cross_check(found: dict[str, manifest.Entry], sums: dict[str, str]) -> str:
    """The manifest's SHA-256 sums against sha256sum's: '' when equal, else what differs."""
    mine = {p: e.sha256 for p, e in found.items() if e.type == "f"}
    if mine == sums:
        return ""
    odd = sorted(set(mine) ^ set(sums)) or sorted(p for p in mine if mine[p] != sums.get(p))
    return f"{len(odd)} file(s) differ, e.g. {odd[:3]}"


# ---------------------------------------------------------------- one restic version


def figure(values: Sequence[float]) -> dict[str, Any]:
    """The best (minimum) of a step's runs, and every run."""
    return {"best": min(values), "runs": [round(v, 3) for v in values]}


def raw_step(lab: Lab, restic: Restic, other: Path, times: list[float], snapshot: str,
             verify: bool = False) -> Callable[[], None]:
    """A baseline run: a raw restore of ``snapshot`` into the empty ``other``, timed into
    ``times``, then ``other`` emptied."""
    def step() -> None:
        times.append(raw_restore(lab, restic, snapshot, fresh(other), verify=verify))
        fresh(other)
    return step


def restore_rounds(lab: Lab, restic: Restic, s1: str, rounds: int, reference: bool,
                   root: Path, other: Path, t: dict[str, list[float]]
                   ) -> list[tuple[str, ...]]:
    """``migrate run``'s restore of ``s1`` into ``root`` against the raw baselines (and,
    with ``reference``, without --verify), in alternating rounds, timed into ``t``. Out:
    the commands the migration's restore ran."""
    argv_used: list[tuple[str, ...]] = []

    def measured() -> None:
        seconds, commands = migration_restore(lab, restic, s1, fresh(root))
        t["restore"].append(seconds)
        argv_used[:] = commands

    def measured_no_verify() -> None:
        t["restore_no_verify"].append(
            migration_restore(lab, restic, s1, fresh(other), verify=False)[0])
        fresh(other)

    for r in range(rounds):
        say(f"  run: restore of {s1[:8]}, round {r + 1}/{rounds}")
        steps = [raw_step(lab, restic, other, t["raw"], s1), measured,
                 raw_step(lab, restic, other, t["raw_verify"], s1, verify=True)]
        if reference:
            steps.append(measured_no_verify)
        alternate(r, steps)
    return argv_used


def sync_rounds(lab: Lab, restic: Restic, snapshots: tuple[str, str], rounds: int,
                trees: tuple[Path, Path], t: dict[str, list[float]], sums: Path,
                manifests: tuple[Path, Path]) -> list[Check]:
    """``migrate sync``: the second snapshot restored over the run's tree (``trees``: the
    target's root and the baselines' folder; made again untimed after the first round)
    against a raw restore, then its manifest check against the run's (``manifests``: the
    folder and the run's manifest) and the hash baselines, timed into ``t``. Out: the
    checks."""
    (s1, s2), (root, other), (folder, first_manifest) = snapshots, trees, manifests
    sync_checks: list[Check] = []
    for r in range(rounds):
        if r:
            say(f"  sync: the run's tree made again (untimed), round {r + 1}/{rounds}")
            migration_restore(lab, restic, s1, fresh(root))
        say(f"  sync: restore of {s2[:8]} over the run's tree, round {r + 1}/{rounds}")

        def sync_restore() -> None:
            t["sync_restore"].append(migration_restore(lab, restic, s2, root)[0])

        alternate(r, [raw_step(lab, restic, other, t["sync_raw"], s2), sync_restore])
        sync_checks.append(check(lab, restic, s2, root, folder / f"sync-{r}.jsonl.gz",
                                 first_manifest))
        t["sync_whole"].append(t["sync_restore"][-1] + sync_checks[-1].seconds)
        t["sync_sha256sum"].append(hash_tree(root / "srv", sums))
        t["sync_openssl"].append(hash_tree(root / "srv", sums.with_suffix(".ssl"),
                                           "openssl"))
    return sync_checks


def bench_version(lab: Lab, restic: Restic, s1: str, s2: str, rounds: int,
                  reference: bool) -> dict[str, Any]:
    tag = restic.label
    root = lab.base / f"target-{tag}"  # the target VM's /
    other = lab.base / f"raw-{tag}"  # the baselines' empty folder
    manifests = lab.base / f"manifests-{tag}"
    manifests.mkdir()
    say(f"restic {tag} ({restic.path}): warming its cache")
    lab.run(restic, lab.argv(restic, make_snapshots_argv(lab.repository(restic))))
    t: dict[str, list[float]] = {k: [] for k in (
        "raw", "raw_verify", "restore", "restore_no_verify", "sha256sum", "openssl",
        "sync_raw", "sync_restore", "sync_whole", "sync_sha256sum", "sync_openssl")}
    # 1. migrate run: restore
    argv_used = restore_rounds(lab, restic, s1, rounds, reference, root, other, t)
    # root holds the migration's restore of the last round: the target after `restore`

    # 2. migrate run: manifest check
    sums = lab.base / f"sums-{tag}.txt"
    checks: list[Check] = []
    first_manifest = manifests / "run.jsonl.gz"
    for r in range(rounds):
        say(f"  run: manifest check, round {r + 1}/{rounds}")
        alternate(r, [
            lambda: t["sha256sum"].append(hash_tree(root / "srv", sums)),
            lambda: checks.append(check(lab, restic, s1, root, first_manifest, None)),
            lambda: t["openssl"].append(hash_tree(root / "srv", sums.with_suffix(".ssl"),
                                                  "openssl"))])
    run_check = min(checks, key=lambda c: c.seconds)
    mismatch = cross_check(checks[-1].found, sums_of(sums, root))

    # 3. migrate sync after ~1 % change
    sync_checks = sync_rounds(lab, restic, (s1, s2), rounds, (root, other), t, sums,
                              (manifests, first_manifest))
    sync_mismatch = cross_check(sync_checks[-1].found, sums_of(sums, root))
    sync_check = min(sync_checks, key=lambda c: c.seconds)
    fresh(root)
    f = {k: figure(v) if v else None for k, v in t.items()}
    return {
        "restic": tag, "path": restic.path, "delete": restic.delete,
        "argv": [list(a) for a in argv_used],
        "run": {"raw_restore": f["raw"], "raw_restore_verify": f["raw_verify"],
                "restore": f["restore"], "restore_no_verify": f["restore_no_verify"],
                "sha256sum": f["sha256sum"], "openssl": f["openssl"],
                "check": {**run_check.as_dict(), "runs": [round(c.seconds, 3)
                                                          for c in checks]},
                "check_sentences": run_check.sentences, "sums_mismatch": mismatch},
        "sync": {"raw_restore": f["sync_raw"], "restore": f["sync_restore"],
                 "check": {**sync_check.as_dict(), "runs": [round(c.seconds, 3)
                                                            for c in sync_checks]},
                 "check_sentences": sync_check.sentences, "whole": f["sync_whole"],
                 "sha256sum": f["sync_sha256sum"], "openssl": f["sync_openssl"],
                 "sums_mismatch": sync_mismatch},
    }


# ---------------------------------------------------------------- evidence (fixed overhead)


def fixed_overhead(path: Path) -> dict[str, Any]:
    """provision, configure and probes seconds of a migration's evidence.json."""
    doc = json.loads(path.read_text())
    steps: dict[str, float] = {}
    for step in doc.get("steps", []):
        steps[str(step["name"])] = steps.get(str(step["name"]), 0.0) + float(step["seconds"])
    fixed = {name: steps.get(name) for name in FIXED_STEPS}
    return {"evidence": str(path), "run_id": doc.get("run_id"), "step": doc.get("step"),
            "verdict": doc.get("verdict"), "restic_version": doc.get("restic_version"),
            "steps": steps, "fixed": fixed,
            "fixed_total": sum(v for v in fixed.values() if v is not None)}


# ---------------------------------------------------------------- output


def best(fig: dict[str, Any] | None) -> float | None:
    return None if fig is None else float(fig["best"])


def ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or not b else f"{a / b:.2f}x"


def verdict(a: float | None, b: float | None, target: float) -> str:
    if a is None or not b:
        return ""
    return f"target ≤ {target:.2f}x: {'ok' if a / b <= target else 'OVER'}"


ROW = "  {:<56}{:>9}  {:<22}{}"


def row(label: str, fig: dict[str, Any], note: str = "") -> str:
    """One figure: its best, every run (when more than one) and a note."""
    runs = fig["runs"]
    spread = "runs " + " ".join(f"{v:.2f}" for v in runs) if len(runs) > 1 else ""
    return ROW.format(label, f"{fig['best']:.2f} s", spread, note).rstrip()


def split(c: dict[str, Any]) -> list[str]:
    """The parts of a check (its fastest run)."""
    parts = [("  restic ls --json + parse", c["ls"]),
             ("  tree.py scan with SHA-256 + parse", c["scan"])]
    if c["extra"]:
        parts.append((f"  delete {c['extra']} extra entries + rescan (no hashing)",
                      c["delete_and_rescan"]))
    parts.append(("  compare + totals + changes + manifest write", c["compare_and_write"]))
    return [ROW.format(label, f"{v:.2f} s", "", "").rstrip() for label, v in parts]


def table(doc: dict[str, Any]) -> str:
    d = doc["data"]
    out = [f"hopnhat migrate benchmark (issue 17): {d['files']:,} files, "
           f"{d['bytes'] / GIB:.2f} GiB (seed {doc['seed']}); best of {doc['rounds']} "
           f"round(s), warm page cache (never dropped), {doc['cpus']} CPUs, load average "
           f"{doc['load'][0]:.2f} at the start, {doc['load'][1]:.2f} at the end (1 min)",
           f"data generated in {d['generate_s']:.1f} s, backup {d['backup_s']:.1f} s "
           f"(snapshot {d['snapshot'][:8]}); day 1 ({d['day1_changes']}, app.db included) "
           f"generated in {d['generate1_s']:.1f} s, backup {d['backup1_s']:.1f} s (snapshot "
           f"{d['snapshot1'][:8]}); both by restic {doc['backup_restic']}; not timed below",
           f"scan: tree.py under {doc['python3']}; hashing bounds: find -type f -print0 | "
           "xargs -0 sha256sum (coreutils) / openssl dgst -sha256, one process at a time",
           ""]
    for v in doc["versions"]:
        run, sync = v["run"], v["sync"]
        raw, restore = best(run["raw_restore"]), best(run["restore"])
        flags = "--verify --delete" if v["delete"] else "--verify"
        out.append(f"restic {v['restic']} ({v['path']}): "
                   + ("restore --delete per backup path" if v["delete"]
                      else "no --delete: whole restore onto /, listing-based deletion"))
        out += ["  migration argv: " + " ".join(argv[argv.index("restore"):])
                for argv in v["argv"]]
        out.append("  migrate run: restore")
        out.append(row("raw restic restore, no --verify [bound]", run["raw_restore"]))
        out.append(row("raw restic restore --verify", run["raw_restore_verify"],
                       ratio(best(run["raw_restore_verify"]), raw) + " raw"))
        out.append(row(f"migration restore ({flags})", run["restore"],
                       f"{ratio(restore, raw)} raw ({verdict(restore, raw, TARGET_RESTORE)}); "
                       f"{ratio(restore, best(run['raw_restore_verify']))} raw --verify"))
        if run["restore_no_verify"] is not None:
            out.append(row("migration argv without --verify (reference)",
                           run["restore_no_verify"],
                           ratio(best(run["restore_no_verify"]), raw) + " raw"))
        c = run["check"]
        check_fig = {"best": c["seconds"], "runs": c["runs"]}
        hashed = best(run["sha256sum"])
        out.append("  migrate run: manifest check")
        out.append(row("sha256sum over the restored tree [bound]", run["sha256sum"]))
        out.append(row("openssl dgst -sha256 over it (reference)", run["openssl"],
                       ratio(best(run["openssl"]), hashed) + " sha256sum"))
        out.append(row("migration check (ls + scan + compare + write)", check_fig,
                       f"{ratio(c['seconds'], hashed)} sha256sum "
                       f"({verdict(c['seconds'], hashed, TARGET_CHECK)}); "
                       f"{ratio(c['seconds'], best(run['openssl']))} openssl"))
        out += split(c)
        out.append(f"    manifest: {c['entries']:,} entries, differences "
                   f"{c['differences']['counts']}; SHA-256 sums "
                   + (f"DIFFER from sha256sum's: {run['sums_mismatch']}"
                      if run["sums_mismatch"] else "equal to sha256sum's"))
        out += [f"    CHECK FAILS: {text}" for text in run["check_sentences"]]
        s = sync["check"]
        sync_fig = {"best": s["seconds"], "runs": s["runs"]}
        sync_raw, sync_restore = best(sync["raw_restore"]), best(sync["restore"])
        sync_hashed, whole = best(sync["sha256sum"]), best(sync["whole"])
        out.append("  migrate sync after ~1 % change")
        out.append(row("raw restic restore of that snapshot, empty folder [bound]",
                       sync["raw_restore"]))
        out.append(row("migration sync restore over the run's tree", sync["restore"],
                       f"{ratio(sync_restore, sync_raw)} raw "
                       f"({verdict(sync_restore, sync_raw, TARGET_SYNC)})"))
        out.append(row("sha256sum over the synced tree", sync["sha256sum"]))
        out.append(row("openssl dgst -sha256 over it (reference)", sync["openssl"]))
        out.append(row("migration sync check", sync_fig,
                       f"{ratio(s['seconds'], sync_hashed)} sha256sum; "
                       f"{ratio(s['seconds'], best(sync['openssl']))} openssl"))
        out += split(s)
        bound = None if sync_raw is None or sync_hashed is None else sync_raw + sync_hashed
        out.append(row("whole sync (restore + check)", sync["whole"],
                       f"{ratio(whole, sync_raw)} raw restore; "
                       f"{ratio(whole, bound)} raw restore + sha256sum"))
        out.append(f"    manifest: {s['entries']:,} entries, {s['deleted']} deleted before the "
                   f"check, differences {s['differences']['counts']}, changes since the run "
                   f"{s['changes']}; SHA-256 sums "
                   + (f"DIFFER: {sync['sums_mismatch']}" if sync["sums_mismatch"]
                      else "equal to sha256sum's"))
        out += [f"    CHECK FAILS: {text}" for text in sync["check_sentences"]]
        out.append("")
    fixed = doc.get("fixed")
    if fixed is None:
        out.append("fixed overhead (provision + configure + probes): not measured here (no "
                   "VMs); give --from-evidence PATH of a lab migration's evidence.json")
    else:
        parts = " + ".join(f"{n} " + ("—" if v is None else f"{v:.1f} s")
                           for n, v in fixed["fixed"].items())
        out.append(f"fixed overhead from {fixed['evidence']} ({fixed['step']} "
                   f"{fixed['run_id']}, {fixed['verdict']}, restic "
                   f"{fixed['restic_version']}): {parts} = {fixed['fixed_total']:.1f} s")
        out.append("  every step: " + ", ".join(f"{n} {v:.1f} s"
                                                for n, v in fixed["steps"].items()))
    return "\n".join(out)


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="1g: 2,100 files, 1 GiB, 3 rounds; 10g: 21,000 files, 10 GiB, "
                             "1 round (explicit --files/--size-mib/--rounds win)")
    parser.add_argument("--files", type=int, help="files in all, app.db included (2100)")
    parser.add_argument("--size-mib", type=int, help="MiB in all (1024)")
    parser.add_argument("--rounds", type=int, help="rounds, best of (3)")
    parser.add_argument("--seed", default="1")
    parser.add_argument("--restic", nargs="+", metavar="PATH",
                        help=f"restic programs (default: {PINNED} and {DEBIAN})")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the reference restore (the migration's argv without "
                             "--verify)")
    parser.add_argument("--tmp", type=Path, help="where the temporary folder goes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--from-evidence", type=Path, metavar="PATH",
                        help="a migration's evidence.json: print its fixed overhead")
    args = parser.parse_args(argv)
    files, mib, rounds = PRESETS[args.preset or "1g"]
    args.files = args.files or files
    args.size_mib = args.size_mib or mib
    args.rounds = args.rounds or rounds
    if args.files < 2 or args.size_mib < 1 or args.rounds < 1:
        parser.error("--files ≥ 2, --size-mib ≥ 1, --rounds ≥ 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    fixed = fixed_overhead(args.from_evidence) if args.from_evidence else None
    paths = args.restic or [str(p) for p in (PINNED, DEBIAN) if p.exists()]
    versions = sorted((restic_of(p) for p in paths), key=lambda r: r.version, reverse=True)
    if not versions:
        raise SystemExit("no restic program: give --restic PATH")
    newest = versions[0]
    load0 = os.getloadavg()[0]
    base = Path(tempfile.mkdtemp(prefix="hopnhat-bench-migrate-", dir=args.tmp))
    say(f"working in {base}")
    try:
        lab = make_lab(base)
        dest = lab.src / "srv" / "bench"
        seed = f"bench-migrate/{args.seed}"
        t = time.perf_counter()
        day0 = data.generate(dest, seed, args.size_mib, args.files - 1, 0, CHANGE_RATE)
        generate_s = time.perf_counter() - t
        say(f"data: {day0.files:,} files, {day0.bytes / 2**20:.0f} MiB in {generate_s:.1f} s")
        lab.run(newest, lab.program(newest, make_init_argv(lab.repository(newest))))
        s1, backup_s = backup(lab, newest)
        say(f"backup {s1[:8]} in {backup_s:.1f} s")
        before = {str(p.relative_to(dest)): p.stat().st_mtime_ns
                  for p in dest.rglob("*") if p.is_file()}
        t = time.perf_counter()
        day1 = data.generate(dest, seed, args.size_mib, args.files - 1, 1, CHANGE_RATE)
        generate1_s = time.perf_counter() - t
        after = {str(p.relative_to(dest)): p.stat().st_mtime_ns
                 for p in dest.rglob("*") if p.is_file()}
        changes = {"added": len(after.keys() - before.keys()),
                   "deleted": len(before.keys() - after.keys()),
                   "rewritten": sum(1 for p in after.keys() & before.keys()
                                    if after[p] != before[p])}
        s2, backup1_s = backup(lab, newest)
        say(f"day 1 {changes}: backup {s2[:8]} in {backup1_s:.1f} s")
        results = [bench_version(lab, r, s1, s2, args.rounds, not args.no_reference)
                   for r in versions]
        doc = {"bench": "migrate", "seed": args.seed, "rounds": args.rounds,
               "cpus": os.cpu_count(), "load": [load0, os.getloadavg()[0]],
               "python3": PYTHON3, "backup_restic": newest.label,
               "data": {"files": day0.files, "bytes": day0.bytes, "generate_s": generate_s,
                        "backup_s": backup_s, "snapshot": s1, "files_day1": day1.files,
                        "bytes_day1": day1.bytes, "day1_changes": changes,
                        "generate1_s": generate1_s, "backup1_s": backup1_s,
                        "snapshot1": s2},
               "targets": {"restore": TARGET_RESTORE, "check": TARGET_CHECK,
                           "sync_restore": TARGET_SYNC},
               "versions": results, "fixed": fixed}
        print(json.dumps(doc, indent=2, sort_keys=True) if args.json else table(doc))
    finally:
        if args.keep:
            say(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
