"""Benchmark (archive catalogue): ``hopnhat archive``'s catalogue — build time, file size and
peak memory — and ``archive find`` latency at 1,000,000 and 7,000,000 file entries, beside
``restic find`` of the same patterns on a real 1,000,000-file repository. Locally, no lab.

The data: paths shaped like a provincial document system's archive, the lab's vocabulary
(``orchestrator/lab/data.py``: its units, its subjects) in the shape
``/srv/qlvb/<unit>/<year>/<month>/<doc type>/<abbr>-<number>-<year>-<slug><ext>``, e.g.
``/srv/qlvb/so-y-te/2023/03/Quyết định/qd-118-2023-phê-duyệt-chuyển-đổi-số.pdf``: 16 units,
years 2015–2026 (more documents in later years), 8 document types (folders with diacritics,
``cv``/``qd``/``tt``… in the name), numbered per unit, year and type, a slug with diacritics
(about 30 % folded to ASCII, as people type them), ``.pdf``/``.docx``/``.odt``, sizes roughly
log-normal, mtimes inside the folder's month (Asia/Ho_Chi_Minh). Deterministic from
``--seed``: the first N entries of one seed are the same whatever N.

Measured:

1. **catalogue build** — ``catalogue.build()`` fed a *generated restic-ls-shaped stream* (the
   ``FileEntry`` generator above; no repository) for each ``--entries`` N, in a child process
   that reports its peak RSS (``VmHWM``); the stream alone is timed too (a pass without
   building), so the build's own cost is build − stream. One snapshot by default;
   ``--snapshots 2`` adds a day-1 snapshot of the same files with ~1 % changed (0.5 %
   rewritten, 0.25 % deleted, 0.25 % added): the entries read double and the grouping folds
   them into versions (the grouping cost);
2. **archive find** — 100 fixed queries (words, path prefixes, globs that narrow through the
   word index and globs with no whole word, which read every row in path order; about a
   third with ``--year``, some matching nothing, some matching most rows) through
   ``search.parse`` + ``search.search(limit=50, zone="Asia/Ho_Chi_Minh")``, each timed
   (wall, parse included) on one read-only connection opened once by
   ``catalogue.open_checked`` (a scratch ledger records the build, as ``archive index``
   does); p50/p95/max (nearest rank) per kind and overall; one cold call per kind (a new
   ``open_checked`` + parse + the query: a CLI call; the OS page cache stays warm, it is
   never dropped). The slowest queries are printed with SQLite's ``EXPLAIN QUERY PLAN`` of
   what ``search`` ran (caught by a trace callback). Target: p95 < 100 ms at 7,000,000;
3. **restic find** (the baseline, in the same run) — a *real* repository of ``--repo-files``
   empty files (the first ``--repo-files`` paths and mtimes of the same seed; empty, so the
   backup is quick: ``restic find`` reads only the snapshot's trees, not the data), built
   once by the newest ``--restic`` and cached under ``.hopnhat/bench/archive-repo/`` (its
   password in a private file there, only its path in ``RESTIC_PASSWORD_FILE``); reused when
   its ``built.json`` matches. ``restic find --json PATTERN`` per pattern and restic version
   (own cache, warmed by an untimed run), ``--restic-runs`` runs, median; against
   ``archive find`` of the same pattern on a catalogue built from that *same repository's*
   ``restic ls --json latest`` stream (JSON lines parsed here, ``manifest.mtime_ns``),
   with the CLI's limit of 50 and with every match (hits compared with restic's). Ratio =
   restic find / archive find.

Scratch data under ``--work`` (``.hopnhat/bench``, git-ignored): catalogues in
``archive-state/archive/bench/`` (removed at the end unless ``--keep``), the repository
kept. Timings are noisy when anything else runs on the machine (the load average at the
start and the end is printed). Prints a table (``--json``: one JSON document); asserts
nothing timed; exits 0 unless the benchmark itself cannot run.

    .venv/bin/python bench/bench_archive.py [--entries 1000000 7000000] [--seed 1]
        [--snapshots 1] [--repo-files 1000000] [--restic PATH ...] [--restic-runs 5]
        [--no-restic] [--work DIR] [--keep] [--json]
    .venv/bin/python bench/bench_archive.py --quick     # 100,000 entries, 20,000-file repo
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator.actions.archive import catalogue, search  # noqa: E402
from orchestrator.actions.archive.catalogue import FileEntry, KeptSnapshot  # noqa: E402
from orchestrator.actions.migrate.manifest import mtime_ns  # noqa: E402
from orchestrator.adapters.restic_argv import (  # noqa: E402
    Repository,
    make_backup_argv,
    make_environment,
    make_init_argv,
    make_ls_argv,
    make_snapshots_argv,
    parse_version,
)
from orchestrator.lab import data  # noqa: E402
from orchestrator.ledger import Ledger  # noqa: E402

PINNED = REPO / ".hopnhat" / "lab" / "bin" / "restic-0.18.1"
DEBIAN = Path("/usr/bin/restic")
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
ZONE = "Asia/Ho_Chi_Minh"
ESTATE = "bench"
HOST = "qlvb-app-01"
LIMIT = 50
TARGET_P95_MS = 100.0
#: bump when the generator's output changes: a cached repository of another one is rebuilt
GENERATOR = 1
CHANGE_RATE = 0.01

# ---------------------------------------------------------------- the synthetic archive

ROOT = "/srv/qlvb"
UNITS = (*data.UNITS, "so-cong-thuong", "so-nong-nghiep-ptnt", "so-van-hoa-the-thao-du-lich",
         "so-thong-tin-truyen-thong", "ubnd-tp-ha-long", "ubnd-huyen-van-don")
YEARS = tuple(range(2015, 2027))
YEAR_WEIGHTS = (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 3)  # 2026: the year has just begun


@dataclass(frozen=True)
class Kind:
    folder: str  # the folder, with diacritics
    abbr: str  # the name's first part
    exts: tuple[str, ...]
    weight: int


KINDS = (
    Kind("Công văn", "cv", (".pdf", ".pdf", ".docx", ".docx"), 30),
    Kind("Quyết định", "qd", (".pdf", ".pdf", ".pdf", ".docx"), 20),
    Kind("Tờ trình", "tt", (".docx", ".odt", ".pdf", ".docx"), 10),
    Kind("Báo cáo", "bc", (".docx", ".pdf", ".odt", ".pdf"), 12),
    Kind("Kế hoạch", "kh", (".docx", ".pdf", ".pdf", ".odt"), 8),
    Kind("Thông báo", "tb", (".pdf", ".pdf", ".pdf", ".docx"), 8),
    Kind("Giấy mời", "gm", (".pdf", ".pdf", ".pdf", ".pdf"), 7),
    Kind("Biên bản", "bb", (".pdf", ".odt", ".pdf", ".odt"), 5),
)
VERBS = ("phê duyệt", "triển khai", "báo cáo kết quả", "đề nghị", "hướng dẫn", "ban hành",
         "về việc", "tổng kết")
_SLUGS = tuple(f"{v} {s}".replace(" ", "-") for v in VERBS for s in data.SUBJECTS)
SLUGS = (*_SLUGS, *(search.fold(s) for s in _SLUGS))  # the second half folded to ASCII


def _table(weights: Sequence[int], size: int = 1024) -> list[int]:
    """A lookup table of ``size`` indices, each index in proportion to its weight."""
    total = sum(weights)
    out: list[int] = []
    acc = 0
    for i, w in enumerate(weights):
        acc += w
        out += [i] * (round(acc * size / total) - len(out))
    return out


def documents(n: int, seed: str, day: int = 0, change: float = CHANGE_RATE
              ) -> Iterator[FileEntry]:
    """The archive's first ``n`` files on day 0, in the order a generator makes them (a
    catalogue sorts them anyway). Day 1: the same files, ``change`` of them touched — half
    rewritten (a later mtime, another size), a quarter deleted, and as many added."""
    rng = random.Random(f"bench-archive/{seed}")
    sizes = [max(200, int(rng.lognormvariate(11.0, 1.6))) for _ in range(4096)]
    years, kinds = _table(YEAR_WEIGHTS), _table([k.weight for k in KINDS])
    zone = ZoneInfo(ZONE)
    months: list[tuple[int, int]] = []  # (start, length) in seconds, per (year, month)
    for y in YEARS:
        for m in range(1, 13):
            start = datetime(y, m, 1, tzinfo=zone)
            end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=zone)
            months.append((int(start.timestamp()), int((end - start).total_seconds())))
    dirs = [f"{ROOT}/{u}/{y}/{m:02d}/{k.folder}/" for u in UNITS for y in YEARS
            for m in range(1, 13) for k in KINDS]
    numbers = [0] * (len(UNITS) * len(YEARS) * len(KINDS))
    nu, ny, nk = len(UNITS), len(YEARS), len(KINDS)
    touched = random.Random(f"bench-archive/{seed}/day{day}")
    added = 0
    for _ in range(n):
        r = rng.getrandbits(128)
        u, y, k = r % nu, years[(r >> 4) & 1023], kinds[(r >> 14) & 1023]
        m = ((r >> 24) & 0xFFFF) % 12
        kind = KINDS[k]
        ext = kind.exts[(r >> 40) & 3]
        slug = SLUGS[((r >> 42) & 0xFFFF) % len(SLUGS)] if (r >> 58) & 7 >= 3 \
            else SLUGS[((r >> 42) & 0xFFFF) % len(_SLUGS)]
        size = sizes[(r >> 61) & 4095]
        month0, length = months[y * 12 + m]
        mtime = (month0 + ((r >> 73) & 0x7FFFFF) % length) * 1_000_000_000 \
            + (r >> 96) % 1_000_000_000
        bucket = (u * ny + y) * nk + k
        numbers[bucket] += 1
        folder = dirs[((u * ny + y) * 12 + m) * nk + k]
        path = f"{folder}{kind.abbr}-{numbers[bucket]}-{YEARS[y]}-{slug}{ext}"
        if day:
            t = touched.random()
            if t < change / 2:  # rewritten: days to months later, another size
                later = touched.randrange(86_400, 120 * 86_400) * 1_000_000_000
                yield FileEntry(path, sizes[touched.getrandbits(12)], mtime + later)
                continue
            if t < change * 3 / 4:  # deleted
                continue
            if t < change:  # added beside it
                added += 1
                yield FileEntry(f"{folder}{kind.abbr}-{900_000 + added}-{YEARS[y]}-bo-sung"
                                f"{ext}", size, mtime + 86_400_000_000_000)
        yield FileEntry(path, size, mtime)


def snapshots_of(n: int, seed: str, count: int) -> list[tuple[KeptSnapshot, int]]:
    """``count`` kept snapshots of the synthetic archive (oldest first), each with its day."""
    out = []
    for day in range(count):
        digest = hashlib.sha256(f"bench-archive/{seed}/{n}/{day}".encode()).hexdigest()
        tags = ("final",) if day == count - 1 else ()
        out.append((KeptSnapshot(digest, f"2025-12-{1 + day:02d}T02:00:00+07:00", HOST,
                                 tags), day))
    return out


# ---------------------------------------------------------------- helpers


def say(text: str) -> None:
    """Progress, on stderr (stdout carries the table or the JSON document)."""
    print(text, file=sys.stderr, flush=True)


def status_kib(field: str) -> int:
    """A ``VmRSS``/``VmHWM`` line of /proc/self/status, in KiB (0 where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------- restic


@dataclass(frozen=True)
class Restic:
    path: str
    version: tuple[int, int, int]

    @property
    def label(self) -> str:
        return ".".join(str(n) for n in self.version)


def restic_of(path: str) -> Restic:
    done = subprocess.run([path, "version"], capture_output=True, text=True, timeout=60,
                          check=True)
    return Restic(path, parse_version(done.stdout))


@dataclass(frozen=True)
class Store:
    """The cached repository: where it is and how each restic opens it."""

    base: Path
    repo: Repository

    def repository(self, restic: Restic) -> Repository:
        return replace(self.repo, cache_dir=self.base / f"cache-{restic.label}")

    def env(self, restic: Restic) -> dict[str, str]:
        return make_environment(self.repository(restic), path=PATH,
                                home=str(self.base / "home"), tmpdir=str(self.base / "tmp"))

    def argv(self, restic: Restic, argv: Sequence[str]) -> list[str]:
        """An adapter argv (starting ``restic``) with this program."""
        return [restic.path, *argv[1:]]

    def run(self, restic: Restic, argv: Sequence[str], cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.argv(restic, argv), env=self.env(restic), cwd=cwd,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"restic {' '.join(argv[3:5])}… exited {done.returncode}: "
                             f"{(done.stderr or done.stdout).strip()[-500:]}")
        return done


def store_at(base: Path) -> Store:
    return Store(base, Repository(url=str(base / "repo"), password_file=base / "password",
                                  name="bench-archive"))


def ensure_repository(work: Path, files: int, seed: str, restic: Restic) -> dict[str, Any]:
    """The repository of the first ``files`` synthetic paths (empty files, their mtimes),
    one snapshot of ``/srv/qlvb``: reused when its ``built.json`` says so, else built anew
    (the source tree removed after the backup)."""
    base = work / "archive-repo" / f"files-{files}"
    marker = base / "built.json"
    want = {"files": files, "seed": seed, "generator": GENERATOR}
    if marker.is_file():
        known = json.loads(marker.read_text())
        if all(known.get(k) == v for k, v in want.items()) and (base / "repo").is_dir():
            say(f"repository of {files:,} files reused: {base / 'repo'}")
            return {**known, "reused": True}
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True, mode=0o700)
    for sub in ("home", "tmp"):
        (base / sub).mkdir()
    store = store_at(base)
    fd = os.open(store.repo.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(24) + "\n")
    store.run(restic, make_init_argv(store.repository(restic)))
    src = base / "src"
    say(f"repository: writing {files:,} empty files under {src} …")
    t = time.perf_counter()
    made: set[str] = set()
    for entry in documents(files, seed):
        path = str(src) + entry.path
        folder = path.rsplit("/", 1)[0]
        if folder not in made:
            os.makedirs(folder, exist_ok=True)
            made.add(folder)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
        os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))
    write_s = time.perf_counter() - t
    say(f"  written in {write_s:.1f} s; restic {restic.label} backup …")
    argv = make_backup_argv(store.repository(restic), [ROOT.lstrip("/")], host=HOST)
    t = time.perf_counter()
    store.run(restic, argv, cwd=src)
    backup_s = time.perf_counter() - t
    say(f"  backup in {backup_s:.1f} s")
    shutil.rmtree(src)
    snap = json.loads(store.run(restic, (*make_snapshots_argv(
        store.repository(restic)), "latest")).stdout)[-1]
    built = {**want, "write_s": round(write_s, 2), "backup_s": round(backup_s, 2),
             "restic": restic.label, "snapshot": snap["id"], "time": snap["time"],
             "host": snap["hostname"], "repo_bytes": du(base / "repo"),
             "dirs": len(made), "built_at": int(time.time())}
    marker.write_text(json.dumps(built, indent=2) + "\n")
    return {**built, "reused": False}


def restic_files(store: Store, restic: Restic, snapshot: str) -> Iterator[FileEntry]:
    """``restic ls --json SNAPSHOT``, JSON lines parsed here: the files, as FileEntry."""
    argv = store.argv(restic, make_ls_argv(store.repository(restic), snapshot))
    with open(os.devnull, "w") as null, subprocess.Popen(
            argv, env=store.env(restic), stdout=subprocess.PIPE, stderr=null, text=True,
            bufsize=1 << 20) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            node = json.loads(line)
            if node.get("struct_type", "node") == "node" and node.get("type") == "file":
                yield FileEntry(node["path"], int(node.get("size") or 0),
                                mtime_ns(node["mtime"]))
    if proc.returncode != 0:
        raise SystemExit(f"restic ls {snapshot[:8]} exited {proc.returncode}")


def restic_find(store: Store, restic: Restic, pattern: str) -> tuple[float, int]:
    """``restic find --json PATTERN`` over every snapshot (there is one): (s, hits)."""
    argv = [*store.argv(restic, ("restic", "--repo", store.repo.url)), "find", "--json",
            "--", pattern]
    t = time.perf_counter()
    done = subprocess.run(argv, env=store.env(restic), capture_output=True, text=True,
                          check=False)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"restic find {pattern!r}: {done.stderr.strip()[-300:]}")
    hits = 0
    for line in done.stdout.splitlines():
        if line.startswith("["):
            hits += sum(int(found.get("hits", 0)) for found in json.loads(line))
    return seconds, hits


# ---------------------------------------------------------------- the build (a child)


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Build one catalogue as ``spec`` says, in this (child) process: what build() made,
    the stream alone timed, and this process's peak RSS."""
    rss_start = status_kib("VmRSS")
    target = Path(spec["target"])
    files_of: Callable[[KeptSnapshot], Iterator[FileEntry]]
    if spec["source"] == "synthetic":
        n, seed = int(spec["entries"]), str(spec["seed"])
        snaps = snapshots_of(n, seed, int(spec["snapshots"]))
        days = {s.id: day for s, day in snaps}
        files_of = lambda s: documents(n, seed, days[s.id])  # noqa: E731
    else:
        store = store_at(Path(spec["store"]))
        major, minor, patch = (int(v) for v in spec["version"])
        restic = Restic(spec["restic"], (major, minor, patch))
        snaps = [(KeptSnapshot(spec["snapshot"], spec["time"], spec["host"], ("final",)), 0)]
        files_of = lambda s: restic_files(store, restic, s.id)  # noqa: E731

    t = time.perf_counter()
    streamed = sum(1 for s, _ in snaps for _ in files_of(s))
    stream_s = time.perf_counter() - t
    say(f"  stream alone: {streamed:,} entries in {stream_s:.1f} s; building …")

    def progress(snap: KeptSnapshot, seen: int) -> None:
        say(f"  snapshot {snap.id[:8]}: {seen:,} entries staged "
            f"({time.perf_counter() - t:.1f} s)")

    t = time.perf_counter()
    built = catalogue.build(target, estate=ESTATE, system=spec["system"],
                            snapshots=[s for s, _ in snaps], files_of=files_of,
                            on_snapshot=progress)
    return {**built.as_dict(), "seconds": built.seconds, "stream_s": stream_s,
            "streamed": streamed, "rss_start_kib": rss_start,
            "peak_rss_kib": status_kib("VmHWM")}


def build_in_child(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the build of {spec['system']} failed (exit {done.returncode})")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------- the queries

WORDS, PREFIX, GLOB, BARE = "words", "prefix", "glob", "glob, no whole word"
KIND_ORDER = (WORDS, PREFIX, GLOB, BARE)
ROWS = (*KIND_ORDER, "with --year", "no match", "limit hit (more)", "all but bare globs",
        "overall")  # the table's rows, in this order

#: (text, --year); 100 in all. Bare globs (no whole word: nothing narrows them) read rows in
#: path order until 51 match, so every row when few or none do.
QUERIES: tuple[tuple[str, int | None], ...] = (
    # words (30): common, rare, diacritics typed, nothing, and with --year
    ("cong van", None), ("cong van 2023", None), ("quyet dinh", None),
    ("bao cao 2024", None), ("so y te", None), ("chuyen doi so", None), ("pdf", None),
    ("ke hoach 2025", None), ("Quyết định 118", None), ("quyet dinh 118", None),
    ("quyet dinh 118 2023", None), ("qd 118 2023", None), ("to trinh 471 2021", None),
    ("cv 2345 2019", None), ("qd 77 2016 ngan sach", None), ("so tu phap bien ban 123", None),
    ("giấy mời 305 2022", None), ("thong bao 999 2025 tuyen dung", None),
    ("ha long bao cao 15", None), ("hop dong", None), ("xyzzy", None),
    ("quyet dinh 99999", None), ("so y te 2014", None), ("cong van", 2023),
    ("quyet dinh 118", 2020), ("bao cao", 2015), ("chuyen doi so", 2026),
    ("thanh tra tinh 2024", 2024), ("to trinh", 2030), ("ke hoach", 2014),
    # prefixes (25): everything, a unit, a year, a month, a type folder, a file, nothing
    ("/srv/qlvb/", None), ("/srv/qlvb", None), ("/srv/qlvb/so-y-te/2023/", None),
    ("/srv/qlvb/so-y-te/2023/03/", None), ("/srv/qlvb/so-tai-chinh/2019/11/Quyết định/",
                                            None),
    ("/srv/qlvb/so-noi-vu", None), ("/srv/qlvb/ubnd-tp-ha-long/2026/01/", None),
    ("/srv/qlvb/van-phong-ubnd/2015/", None), ("/srv/qlvb/thanh-tra-tinh/2024/12/Tờ trình/",
                                               None),
    ("/srv/qlvb/so-y-te/2014/", None), ("/srv/khac/", None),
    ("/srv/qlvb/so-y-te/2023/13/", None), ("/srv/qlvb/so-y-te/2023/03/Hợp đồng/", None),
    ("/srv/qlvb/so-y-t", None), ("/srv/qlvb/so-xay-dung/2022/07/Công văn", None),
    ("/srv/qlvb/so-y-te/", 2023), ("/srv/qlvb/", 2026), ("/srv/qlvb/", 2015),
    ("/srv/qlvb/so-y-te/2019/", 2024), ("/srv/qlvb/so-tu-phap/2020/", 2020),
    ("/srv/qlvb/ubnd-huyen-van-don/", 2018), ("/srv/qlvb/so-cong-thuong/2025/", 2025),
    ("/srv/qlvb/", 2014), ("/srv/qlvb/so-noi-vu/2024/06/", 2024),
    ("/srv/qlvb/so-giao-duc-dao-tao/", 2021),
    # globs the word index narrows (30)
    ("*-118-2023*.pdf", None), ("qd-1*.pdf", None), ("qd-118-*", None),
    ("cv-2*-2024-*.docx", None), ("*.odt", None), ("*.pdf", None), ("tt-*-2021-*", None),
    ("bb-5??-20*", None), ("*-4711-*", None), ("gm-305-2022-*", None), ("*-99999-*", None),
    ("*.xlsx", None), ("qd-*-2014-*", None), ("*/so-y-te/2023/*/qd-*", None),
    ("/srv/qlvb/*/2020/*/Quyết định/qd-12*.pdf", None), ("*-phê-duyệt-*", None),
    ("kh-*-ngan-sach-nam.pdf", None), ("*-2019-*chuyen-doi-so*", None),
    ("bc-1?-2017-*.odt", None), ("[qt][dt]-20-2022-*", None), ("*.pdf", 2019),
    ("qd-1*.pdf", 2023), ("*-118-2023*.pdf", 2023), ("*.odt", 2014), ("cv-*", 2026),
    ("tb-*-2025-*", 2025), ("*-118-*", 2016), ("*.docx", 2030), ("gm-*-2020-*.pdf", 2020),
    ("*/so-tai-chinh/*/bc-*", 2022),
    # globs with no whole word (15): a substring, a shape
    ("*118*", None), ("*sach*", None), ("*chuyen*", None), ("*2023*", None),
    ("??-1?-20??-*", None), ("*doi-so.pdf", None), ("*99999*", None), ("*zzz*", None),
    ("*118*", 2023), ("*sach*", 2016), ("*nam.odt", 2021), ("*2019*", 2019),
    ("*2020*", 2014), ("*-1-*", None), ("*uyệt*", None),
)


def kind_of(query: search.Query) -> str:
    """The query's kind; a glob none of whose words begins a word of the name is "bare"
    (``*118*``: only the vocabulary can narrow it)."""
    if query.kind != search.GLOB:
        return query.kind
    subject = query.pattern if query.whole_path else query.pattern.rsplit("/", 1)[-1]
    exact, prefix, _ = search.glob_terms(subject)
    return BARE if not exact and not prefix else query.kind


@dataclass
class Timed:
    text: str
    year: int | None
    kind: str
    ms: float
    matches: int
    more: bool
    sql: list[str]

    @property
    def statement(self) -> str:
        """What search() ran (the trace also holds FTS5's own statements, "-- " first)."""
        return next((s for s in self.sql if s.lstrip().upper().startswith("SELECT")), "")

    def as_dict(self) -> dict[str, Any]:
        return {"query": self.text, "year": self.year, "kind": self.kind,
                "ms": round(self.ms, 3), "matches": self.matches, "more": self.more}


def run_query(db: sqlite3.Connection, text: str, year: int | None, system: str,
              limit: int = LIMIT) -> Timed:
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    t = time.perf_counter()
    query = search.parse(text, year=year)
    found, more = search.search(db, system, query, limit=limit, zone=ZONE)
    ms = (time.perf_counter() - t) * 1000
    db.set_trace_callback(None)
    return Timed(text, year, kind_of(query), ms, len(found), more, statements)


def figures(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": percentile(values, 0.5), "p95": percentile(values, 0.95),
            "max": max(values)}


def plan(db: sqlite3.Connection, sql: str) -> list[str]:
    try:
        return [str(r[3]) for r in db.execute("EXPLAIN QUERY PLAN " + sql)]
    except sqlite3.Error as exc:
        return [f"(no plan: {exc})"]


def measure(state: Path, ledger: Ledger, system: str) -> dict[str, Any]:
    """The 100 queries on one read-only connection; a cold call per kind; the plans of the
    slowest."""
    cold = {}
    for kind in KIND_ORDER:
        text, year = next((t, y) for t, y in QUERIES
                          if kind_of(search.parse(t, year=y)) == kind)
        t = time.perf_counter()
        fresh = catalogue.open_checked(ledger, state, ESTATE, system)
        opened = (time.perf_counter() - t) * 1000
        one = run_query(fresh, text, year, system)
        fresh.close()
        cold[kind] = {"query": text, "year": year, "open_ms": round(opened, 3),
                      "query_ms": round(one.ms, 3), "ms": round(opened + one.ms, 3)}
    db = catalogue.open_checked(ledger, state, ESTATE, system)
    try:
        timed = [run_query(db, text, year, system) for text, year in QUERIES]
        slowest = sorted(timed, key=lambda q: q.ms, reverse=True)[:6]
        plans = [{**q.as_dict(), "sql": q.statement,
                  "plan": plan(db, q.statement) if q.statement else []} for q in slowest]
    finally:
        db.close()
    rows: dict[str, Any] = {k: figures([q.ms for q in timed if q.kind == k])
                            for k in KIND_ORDER}
    rows["with --year"] = figures([q.ms for q in timed if q.year is not None])
    rows["no match"] = figures([q.ms for q in timed if q.matches == 0])
    rows["limit hit (more)"] = figures([q.ms for q in timed if q.more])
    rows["all but bare globs"] = figures([q.ms for q in timed if q.kind != BARE])
    rows["overall"] = figures([q.ms for q in timed])
    slow = {k: max((q for q in timed if q.kind == k), key=lambda q: q.ms).as_dict()
            for k in KIND_ORDER}
    return {"queries": [q.as_dict() for q in timed], "figures": rows, "cold": cold,
            "slowest_per_kind": slow, "slowest": plans}


# ---------------------------------------------------------------- one catalogue


def register(ledger: Ledger, system: str, result: dict[str, Any]) -> None:
    """What ``archive index`` records after a build (so ``open_checked`` accepts it)."""
    built = catalogue.Built(Path(result["file"]), result["sha256"], result["snapshots"],
                            result["versions"], result["entries"], result["bytes"],
                            result["seconds"])
    catalogue.record(ledger, ESTATE, system, built)


def catalogue_bench(state: Path, ledger: Ledger, spec: dict[str, Any]) -> dict[str, Any]:
    system = spec["system"]
    spec = {**spec, "target": str(catalogue.location(state, ESTATE, system))}
    say(f"catalogue {system}: building ({spec['source']}) …")
    result = build_in_child(spec)
    say(f"  built in {result['seconds']:.1f} s, {result['bytes'] / 2**20:.0f} MiB, peak RSS "
        f"{result['peak_rss_kib'] / 1024:.0f} MiB; 100 queries …")
    register(ledger, system, result)
    return {"build": result, "find": measure(state, ledger, system)}


#: restic find patterns (restic matches a pattern without '/' against the name, as
#: archive find's globs do); all lower-case ASCII, so restic's case-sensitive match and
#: archive find's folded one agree
RESTIC_PATTERNS = ("*-118-2023*", "qd-1*.pdf", "*-4711-*", "*118*")


def restic_bench(store: Store, versions: list[Restic], runs: int, state: Path,
                 ledger: Ledger, system: str) -> dict[str, Any]:
    out: dict[str, Any] = {"patterns": []}
    db = catalogue.open_checked(ledger, state, ESTATE, system)
    try:
        for restic in versions:  # warm each version's cache, untimed
            say(f"restic {restic.label}: warming its cache (an untimed find) …")
            restic_find(store, restic, RESTIC_PATTERNS[0])
        for pattern in RESTIC_PATTERNS:
            row: dict[str, Any] = {"pattern": pattern, "restic": {}}
            for restic in versions:
                times, hits = [], 0
                for _ in range(runs):
                    seconds, hits = restic_find(store, restic, pattern)
                    times.append(seconds)
                row["restic"][restic.label] = {"median_s": statistics.median(times),
                                               "runs": [round(s, 3) for s in times],
                                               "hits": hits}
                say(f"  restic {restic.label} find {pattern}: median "
                    f"{statistics.median(times):.2f} s, {hits:,} hits")
            limited = [run_query(db, pattern, None, system) for _ in range(runs)]
            whole = [run_query(db, pattern, None, system, limit=10**9) for _ in range(runs)]
            row["archive_ms"] = statistics.median(q.ms for q in limited)
            row["archive_runs_ms"] = [round(q.ms, 3) for q in limited]
            row["archive_matches"] = limited[-1].matches
            row["archive_all_ms"] = statistics.median(q.ms for q in whole)
            row["archive_all_matches"] = whole[-1].matches
            row["kind"] = limited[-1].kind
            out["patterns"].append(row)
    finally:
        db.close()
    return out


# ---------------------------------------------------------------- output


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"


def table(doc: dict[str, Any]) -> str:
    out = [f"hopnhat archive benchmark: seed {doc['seed']}, {doc['cpus']} CPUs, load average "
           f"{doc['load'][0]:.2f} at the start, {doc['load'][1]:.2f} at the end (1 min); "
           f"SQLite {doc['sqlite']}; timings from one run each (noisy when the machine is "
           "busy)", ""]
    out += build_table(doc["catalogues"])
    out.append(f"archive find: {len(QUERIES)} queries, limit {LIMIT}, zone {ZONE}, one "
               "read-only connection (open_checked once); wall ms, parse included; "
               "nearest-rank percentiles")
    for c in doc["catalogues"]:
        out += find_table(c)
    r = doc.get("restic")
    if r:
        out += restic_table(r)
    return "\n".join(out)


def build_table(catalogues: list[dict[str, Any]]) -> list[str]:
    """The lines on building each catalogue."""
    out = ["catalogue build (catalogue.build in a child process; peak RSS = its VmHWM)"]
    head = "  {:<34}{:>11}{:>10}{:>10}{:>10}{:>12}{:>10}{:>10}{:>10}{:>11}"
    out.append(head.format("catalogue", "entries", "versions", "build s", "stream s",
                           "build-str s", "MiB", "B/entry", "peak MiB", "entries/s"))
    for c in catalogues:
        b = c["build"]
        out.append(head.format(
            c["label"][:34], f"{b['entries']:,}", f"{b['versions']:,}", f"{b['seconds']:.1f}",
            f"{b['stream_s']:.1f}", f"{b['seconds'] - b['stream_s']:.1f}",
            f"{b['bytes'] / 2**20:,.0f}", f"{b['bytes'] / max(1, b['entries']):.0f}",
            f"{b['peak_rss_kib'] / 1024:,.0f}", f"{b['entries'] / b['seconds']:,.0f}"))
    for c in catalogues:
        out.append(f"  {c['label']}: {c['source']}")
    out.append("")
    return out


def find_table(c: dict[str, Any]) -> list[str]:
    """The lines on ``archive find`` over catalogue ``c``: figures by kind of query, cold
    queries, the slowest and their query plans."""
    f = c["find"]
    out = [f"  {c['label']} ({c['build']['versions']:,} versions)",
           "    {:<22}{:>5}{:>10}{:>10}{:>10}   {}".format(
               "kind", "n", "p50 ms", "p95 ms", "max ms", "slowest")]
    for name in ROWS:
        fig = f["figures"].get(name, {"n": 0})
        if not fig["n"]:
            continue
        slow = f["slowest_per_kind"].get(name)
        note = ""
        if slow:
            note = f"{slow['query']!r}" + (f" --year {slow['year']}" if slow["year"]
                                           else "") + f" ({slow['matches']} found)"
        if name == "overall" and c["target"]:
            verdict = "ok" if fig["p95"] < TARGET_P95_MS else "OVER"
            note = f"target p95 < {TARGET_P95_MS:.0f} ms: {verdict}"
        out.append("    {:<22}{:>5}{:>10}{:>10}{:>10}   {}".format(
            name, fig["n"], ms(fig["p50"]), ms(fig["p95"]), ms(fig["max"]), note).rstrip())
    cold = ", ".join(f"{k} {f['cold'][k]['ms']:,.1f} ms (open "
                     f"{f['cold'][k]['open_ms']:.1f})" for k in KIND_ORDER if k in f["cold"])
    out.append(f"    cold (new open_checked + parse + query): {cold}")
    out.append("    slowest queries and what search ran (EXPLAIN QUERY PLAN):")
    for s in f["slowest"][:4]:
        year = f" --year {s['year']}" if s["year"] else ""
        out.append(f"      {ms(s['ms'])} ms  {s['query']!r}{year} [{s['kind']}], "
                   f"{s['matches']} found{' (more)' if s['more'] else ''}: "
                   + "; ".join(s["plan"]))
    return out


def restic_table(r: dict[str, Any]) -> list[str]:
    """The lines comparing ``restic find`` with ``archive find`` over the same data."""
    rep = r["repository"]
    out = ["", f"restic find vs archive find, same data: a repository of "
           f"{rep['files']:,} empty files (first {rep['files']:,} synthetic paths, "
           f"snapshot {rep['snapshot'][:8]}, {rep['repo_bytes'] / 2**20:,.0f} MiB; "
           + ("reused from an earlier run, built" if rep["reused"] else "built")
           + f" by restic {rep['restic']}: files written in {rep['write_s']:.0f} s, "
           f"backup {rep['backup_s']:.0f} s); the catalogue built from its "
           f"`restic ls --json latest` (row '{r['catalogue']}' above); restic: median "
           f"of {r['runs']} runs, own warm cache; archive: median of {r['runs']}"]
    labels = sorted(r["patterns"][0]["restic"] if r["patterns"] else [], reverse=True,
                    key=lambda v: tuple(int(x) for x in v.split(".")))  # newest first
    line = "  {:<14}" + "{:>24}" * len(labels) + "{:>20}{:>24}   {}"
    out.append(line.format("pattern", *(f"restic {v}" for v in labels),
                           "archive, limit 50", "archive, every match",
                           f"ratio restic {labels[0] if labels else ''}/archive"))
    for p in r["patterns"]:
        first = p["restic"][labels[0]]["median_s"] * 1000 if labels else 0.0
        out.append(line.format(
            p["pattern"],
            *(f"{p['restic'][v]['median_s']:.2f} s ({p['restic'][v]['hits']:,} hits)"
              for v in labels),
            f"{ms(p['archive_ms'])} ms ({p['archive_matches']}"
            f"{'+' if p['archive_matches'] >= LIMIT else ''})",
            f"{ms(p['archive_all_ms'])} ms ({p['archive_all_matches']:,})",
            f"{first / max(p['archive_ms'], 1e-3):,.0f}x / "
            f"{first / max(p['archive_all_ms'], 1e-3):,.0f}x"))
    out.append("  restic: seconds (its hits over the snapshot); archive find: ms (matches; "
               "with every match = no limit, the count to compare with restic's hits); "
               "ratio = restic median / archive median, limit 50 / every match")
    out.append("")
    return out


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--entries", type=int, nargs="+", metavar="N",
                        help="synthetic catalogues of N file entries (1000000 7000000)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 100,000 entries, a 20,000-file repository, "
                             "3 restic runs (explicit options win)")
    parser.add_argument("--seed", default="1")
    parser.add_argument("--snapshots", type=int, choices=(1, 2), default=1,
                        help="2: a second snapshot with ~1 %% changed (the grouping cost)")
    parser.add_argument("--repo-files", type=int, help="files in the restic repository "
                        "(1000000)")
    parser.add_argument("--restic", nargs="+", metavar="PATH",
                        help=f"restic programs (default: {PINNED} and {DEBIAN}); the "
                             "newest builds the repository")
    parser.add_argument("--restic-runs", type=int, help="timed restic find runs per "
                        "pattern and version (5)")
    parser.add_argument("--no-restic", action="store_true", help="no restic baseline")
    parser.add_argument("--work", type=Path, default=REPO / ".hopnhat" / "bench",
                        help="scratch folder (.hopnhat/bench)")
    parser.add_argument("--keep", action="store_true", help="keep the catalogues")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.entries = args.entries or ([100_000] if args.quick else [1_000_000, 7_000_000])
    args.repo_files = args.repo_files or (20_000 if args.quick else 1_000_000)
    args.restic_runs = args.restic_runs or (3 if args.quick else 5)
    if min(args.entries) < 1 or args.repo_files < 1 or args.restic_runs < 1:
        parser.error("--entries, --repo-files and --restic-runs ≥ 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    load0 = os.getloadavg()[0]
    work: Path = args.work
    state = work / "archive-state"
    shutil.rmtree(state / "archive", ignore_errors=True)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    (state / "ledger.sqlite").unlink(missing_ok=True)
    with Ledger(state / "ledger.sqlite") as ledger:
        doc: dict[str, Any] = {"bench": "archive", "seed": args.seed, "cpus": os.cpu_count(),
                               "sqlite": sqlite3.sqlite_version, "limit": LIMIT, "zone": ZONE,
                               "snapshots": args.snapshots, "catalogues": []}
        try:
            for n in args.entries:
                system = f"synthetic-{n}"
                source = (f"generated restic-ls-shaped stream (FileEntry generator, no "
                          f"repository), seed {args.seed}, {args.snapshots} snapshot(s)"
                          + (" — day 1 with ~1 % changed" if args.snapshots == 2 else ""))
                result = catalogue_bench(state, ledger, {
                    "source": "synthetic", "system": system, "entries": n, "seed": args.seed,
                    "snapshots": args.snapshots})
                doc["catalogues"].append({"label": f"synthetic {n:,}", "source": source,
                                          "target": n >= 7_000_000, **result})
            if not args.no_restic:
                paths = args.restic or [str(p) for p in (PINNED, DEBIAN) if p.exists()]
                versions = sorted((restic_of(p) for p in paths), key=lambda r: r.version,
                                  reverse=True)
                if not versions:
                    raise SystemExit("no restic program: give --restic PATH or --no-restic")
                newest = versions[0]
                repository = ensure_repository(work, args.repo_files, args.seed, newest)
                store = store_at(work / "archive-repo" / f"files-{args.repo_files}")
                system = f"restic-{args.repo_files}"
                label = f"restic ls {args.repo_files:,}"
                result = catalogue_bench(state, ledger, {
                    "source": "restic", "system": system, "store": str(store.base),
                    "restic": newest.path, "version": list(newest.version),
                    "snapshot": repository["snapshot"], "time": repository["time"],
                    "host": repository["host"]})
                doc["catalogues"].append({
                    "label": label, "target": False, **result,
                    "source": f"`restic ls --json {repository['snapshot'][:8]}` of the cached "
                              f"repository (restic {newest.label}), JSON lines parsed here"})
                doc["restic"] = {"repository": repository, "catalogue": label,
                                 "runs": args.restic_runs,
                                 **restic_bench(store, versions, args.restic_runs, state, ledger,
                                                system)}
            doc["load"] = [load0, os.getloadavg()[0]]
            print(json.dumps(doc, indent=2, sort_keys=True) if args.json else table(doc))
        finally:
            if not args.keep:
                shutil.rmtree(state / "archive", ignore_errors=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
