"""Deterministic synthetic application data: what a provincial document management system
keeps on its server, for the lab's backups, restores and benchmarks.

``generate(dest, seed, size_mb, files, day)`` builds, under ``dest``:

- ``documents/<year>/<unit>/<kind>-<id><ext>`` — scanned letters, decisions, reports…, sizes
  roughly log-normal (many small, a few large) summing to about ``size_mb``; binary kinds are
  incompressible bytes behind the format's magic number, small text kinds are Vietnamese prose;
- ``app.db`` — SQLite: ``documents`` (one metadata row per file, with its SHA-256, plus a few
  hundred paper-only records) and ``audit_log`` (one row per change of each day).

Everything follows from ``(seed, day)``: day N is day 0 with N days of changes applied, each
day rewriting, adding and deleting about ``change_rate`` of the files and adding database
rows. Generating the same day twice gives byte-identical trees, file mtimes included (so
restic's change detection sees a real incremental day). Generating into a folder holding
another day writes only the files that differ and deletes those that are gone.

Every choice comes from ``random.Random`` seeded by strings (so independent of
PYTHONHASHSEED). Bulk bytes of a document are the AES-256-CTR keystream under a key and nonce
drawn from that document's own Random: ``Random.randbytes`` makes about 200-400 MB/s here,
AES-CTR (``cryptography``, which paramiko already requires) several GB/s, so 1 GiB in 2,100
files takes a few seconds, mostly the disk; hashing and writing run in worker threads while
the next file is generated.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MIB = 1024 * 1024
#: spread of the log-normal size distribution (sigma of the underlying normal)
SIZE_SIGMA = 1.5
MIN_SIZE = 2048
#: text kinds only for files up to this size; larger documents are binary (PDF, scans…)
TEXT_MAX = 64 * 1024
#: records of paper documents with no file, in the documents table from day 0
PAPER_ROWS = 300
#: day 0 is 2025-01-06 (UTC); day N's changes are stamped N days later
DAY0 = int(datetime(2025, 1, 6, tzinfo=UTC).timestamp())
DAY = 86400
#: the files this generator owns under ``dest`` (nothing else there is touched)
DOCUMENTS = "documents"
DATABASE = "app.db"
_CHUNK = MIB
_ZEROS = memoryview(bytes(_CHUNK))

UNITS = (
    "so-noi-vu", "so-tai-chinh", "so-tu-phap", "so-y-te", "so-giao-duc-dao-tao",
    "so-xay-dung", "so-ke-hoach-dau-tu", "so-tai-nguyen-moi-truong", "thanh-tra-tinh",
    "van-phong-ubnd",
)
YEARS = (2019, 2020, 2021, 2022, 2023, 2024)
YEAR_WEIGHTS = (1, 2, 3, 4, 6, 8)
#: kind slug → (title words, extension, share among binary/text documents)
BINARY_KINDS = {
    "cong-van": ("Công văn", ".pdf", 5),
    "quyet-dinh": ("Quyết định", ".pdf", 3),
    "to-trinh": ("Tờ trình", ".docx", 2),
    "bao-cao": ("Báo cáo", ".docx", 3),
    "ke-hoach": ("Kế hoạch", ".xlsx", 1),
    "ho-so-scan": ("Hồ sơ scan", ".jpg", 2),
}
TEXT_KINDS = {
    "bien-ban": ("Biên bản", ".txt", 2),
    "du-lieu-lien-thong": ("Dữ liệu liên thông", ".xml", 1),
}
MAGIC = {
    ".pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
    ".docx": b"PK\x03\x04\x14\x00\x06\x00",
    ".xlsx": b"PK\x03\x04\x14\x00\x06\x00",
    ".jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    ".xml": b'<?xml version="1.0" encoding="UTF-8"?>\n',
    ".txt": b"",
}
SUBJECTS = (
    "sắp xếp đơn vị hành chính", "hợp nhất trung tâm dữ liệu", "chuyển đổi số",
    "ngân sách năm", "tuyển dụng công chức", "cải cách thủ tục hành chính",
    "phòng chống thiên tai", "đầu tư công", "quy hoạch sử dụng đất", "y tế cơ sở",
)
_PROSE = (
    "ủy ban nhân dân tỉnh căn cứ luật tổ chức chính quyền địa phương xét đề nghị của giám đốc "
    "sở về việc triển khai thực hiện kế hoạch năm các cơ quan đơn vị có liên quan chịu trách "
    "nhiệm thi hành quyết định này kể từ ngày ký báo cáo kết quả tổng hợp số liệu hồ sơ thủ "
    "tục hành chính dịch vụ công trực tuyến hệ thống quản lý văn bản điều hành sao lưu dữ liệu"
)
WORDS = tuple(_PROSE.split())


@dataclass(frozen=True)
class DataSummary:
    """What :func:`generate` left under ``dest``: the number of files (documents and app.db),
    their total bytes, the rows in app.db (documents + audit_log), and the SHA-256 of the
    manifest (one ``sha256 size path`` line per file, sorted by path) — the same value
    :func:`manifest_digest` computes from a tree on disk, e.g. a restored copy."""

    files: int
    bytes: int
    db_rows: int
    manifest_sha256: str


@dataclass(frozen=True)
class _Doc:
    doc_id: int
    year: int
    unit: str
    kind: str
    ext: str
    size: int
    version: int
    created_day: int
    updated_day: int
    mtime: int
    subject: str

    @property
    def path(self) -> str:
        return f"{DOCUMENTS}/{self.year}/{self.unit}/{self.kind}-{self.doc_id:06d}{self.ext}"

    @property
    def title(self) -> str:
        words = {**BINARY_KINDS, **TEXT_KINDS}[self.kind][0]
        return f"{words} số {self.doc_id}/{self.year}/{self.unit.upper()} về {self.subject}"


@dataclass(frozen=True)
class _Event:
    day: int
    doc_id: int
    action: str
    at: int


@dataclass
class _State:
    """The plan of one day: live documents, paper rows and the audit trail."""

    docs: dict[int, _Doc]
    paper: list[tuple[int, str, str, int, int]]  # id, title, unit, year, created_day
    events: list[_Event]
    next_id: int
    scale: float


def _rng(*parts: object) -> random.Random:
    # str seeds are hashed with SHA-512 by Random: stable across runs and PYTHONHASHSEED
    return random.Random("|".join(str(p) for p in parts))  # noqa: S311 - test data, not crypto


# --- the plan -------------------------------------------------------------------------------


def _new_doc(rng: random.Random, doc_id: int, size: int, day: int, year: int | None) -> _Doc:
    kinds = BINARY_KINDS
    if size <= TEXT_MAX and rng.random() < 0.35:
        kinds = TEXT_KINDS
    names = sorted(kinds)
    kind = rng.choices(names, weights=[kinds[k][2] for k in names])[0]
    the_year = year if year is not None else rng.choices(YEARS, weights=YEAR_WEIGHTS)[0]
    if day == 0:
        # day-0 documents were last touched some time in their own year
        mtime = int(datetime(the_year, 1, 1, tzinfo=UTC).timestamp()) + rng.randrange(364 * DAY)
    else:
        mtime = DAY0 + day * DAY + rng.randrange(8 * 3600, 18 * 3600)
    return _Doc(doc_id, the_year, rng.choice(UNITS), kind, kinds[kind][1], size, 1, day, day,
                mtime, rng.choice(SUBJECTS))


def _scale(weights: list[float], budget: int) -> float:
    """The factor that makes ``sum(max(MIN_SIZE, w * factor))`` about ``budget``: files
    raised to the minimum size take their share from the others."""
    scale = budget / sum(weights)
    for _ in range(20):
        floor = [w for w in weights if w * scale < MIN_SIZE]
        rest = sum(weights) - sum(floor)
        room = budget - len(floor) * MIN_SIZE
        if rest <= 0 or room <= 0:
            break
        new = room / rest
        if abs(new - scale) <= 1e-9 * scale:
            break
        scale = new
    return scale


def _day0(seed: str, size_bytes: int, files: int, db_bytes: int) -> _State:
    """Day 0: ``files`` documents sharing ``size_bytes`` minus app.db's ``db_bytes``."""
    rng = _rng(seed, "layout")
    weights = [rng.lognormvariate(0.0, SIZE_SIGMA) for _ in range(files)]
    budget = max(size_bytes - db_bytes, files * MIN_SIZE)
    scale = _scale(weights, budget)
    docs = {}
    for i, w in enumerate(weights, start=1):
        docs[i] = _new_doc(rng, i, max(MIN_SIZE, round(w * scale)), 0, None)
    paper = []
    for j in range(PAPER_ROWS):
        paper_id = files + 1 + j
        year = rng.choices(YEARS, weights=YEAR_WEIGHTS)[0]
        paper.append((paper_id, f"Hồ sơ giấy số {paper_id}/{year} về {rng.choice(SUBJECTS)}",
                      rng.choice(UNITS), year, 0))
    return _State(docs, paper, [], files + PAPER_ROWS + 1, scale)


def _apply_day(state: _State, seed: str, day: int, change_rate: float) -> None:
    """Day ``day``'s changes: about ``change_rate`` of the live files are rewritten, added or
    deleted (mostly rewritten), plus new paper records and one audit row per change."""
    rng = _rng(seed, "day", day)
    live = sorted(state.docs)
    changes = round(change_rate * len(live)) if change_rate > 0 else 0
    if change_rate > 0 and live:
        changes = max(1, changes)
    deleted = round(changes * 0.1)
    added = round(changes * 0.15)
    rewritten = min(changes - deleted - added, len(live) - deleted)
    picked = rng.sample(live, min(len(live), rewritten + deleted))
    for doc_id in picked[:rewritten]:
        doc = state.docs[doc_id]
        size = max(MIN_SIZE, round(doc.size * rng.uniform(0.85, 1.2)))
        if doc.ext in (".txt", ".xml"):
            size = min(size, TEXT_MAX)
        at = DAY0 + day * DAY + rng.randrange(8 * 3600, 18 * 3600)
        state.docs[doc_id] = replace(doc, size=size, version=doc.version + 1,
                                     updated_day=day, mtime=at)
        state.events.append(_Event(day, doc_id, "update", at))
    for doc_id in picked[rewritten:]:
        del state.docs[doc_id]
        state.events.append(_Event(day, doc_id, "delete",
                                   DAY0 + day * DAY + rng.randrange(8 * 3600, 18 * 3600)))
    for _ in range(added):
        size = max(MIN_SIZE, round(rng.lognormvariate(0.0, SIZE_SIGMA) * state.scale))
        doc = _new_doc(rng, state.next_id, size, day, YEARS[-1] + 1)
        state.docs[doc.doc_id] = doc
        state.next_id += 1
        state.events.append(_Event(day, doc.doc_id, "create", doc.mtime))
    for _ in range(rng.randrange(10, 31)):
        year = YEARS[-1] + 1
        state.paper.append((state.next_id,
                            f"Hồ sơ giấy số {state.next_id}/{year} về {rng.choice(SUBJECTS)}",
                            rng.choice(UNITS), year, day))
        state.next_id += 1


def _plan(seed: str, size_bytes: int, files: int, day: int, change_rate: float) -> _State:
    # app.db takes its share of the total: plan with a guess of its size, measure the day-0
    # database that plan gives (in memory, a few ms), and plan again with that measure
    guess = (files + PAPER_ROWS) * 300 + 20480
    state = _day0(seed, size_bytes, files, guess)
    measured = _fill(":memory:", state, {})
    if measured != guess:
        state = _day0(seed, size_bytes, files, measured)
    for d in range(1, day + 1):
        _apply_day(state, seed, d, change_rate)
    return state


# --- contents -------------------------------------------------------------------------------


def _content(seed: str, doc: _Doc) -> Iterator[bytes]:
    """The bytes of ``doc`` (at its version), in chunks of at most 1 MiB."""
    rng = _rng(seed, "content", doc.doc_id, doc.version)
    head = MAGIC[doc.ext]
    if doc.ext in (".txt", ".xml"):
        words = rng.choices(WORDS, k=doc.size // 4 + 16)
        lines = [" ".join(words[i:i + 14]).capitalize() + "." for i in range(0, len(words), 14)]
        body = head + "\n".join(lines).encode()
        # cut at a character boundary, then pad to the exact size
        body = body[: doc.size].decode("utf-8", "ignore").encode()
        yield body + b"\n" * (doc.size - len(body))
        return
    # keystream of AES-256-CTR under a key/nonce from this document's Random: incompressible,
    # unique per document and version (no accidental dedup in restic), and fast
    stream = Cipher(algorithms.AES(rng.randbytes(32)), modes.CTR(rng.randbytes(16))).encryptor()
    first = min(doc.size, _CHUNK) - len(head)
    yield head + stream.update(_ZEROS[:first])
    left = doc.size - len(head) - first
    while left > 0:
        n = min(left, _CHUNK)
        yield stream.update(_ZEROS[:n])
        left -= n


def _write(path: Path, chunks: list[bytes], mtime: int) -> str:
    """Write ``chunks`` to ``path`` with mtime ``mtime``; return their SHA-256."""
    digest = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        for chunk in chunks:
            digest.update(chunk)  # hashlib and write release the GIL on large buffers
            out.write(chunk)
    os.utime(path, ns=(mtime * 10**9, mtime * 10**9))
    return digest.hexdigest()


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        while block := src.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _up_to_date(path: Path, doc: _Doc) -> bool:
    """A file already of this version: same size and the deterministic mtime (mtimes are set
    after the last byte is written, so a half-written file never passes)."""
    try:
        st = path.stat()
    except OSError:
        return False
    return st.st_size == doc.size and st.st_mtime_ns == doc.mtime * 10**9


def _write_documents(dest: Path, seed: str, docs: list[_Doc]) -> dict[int, str]:
    """Bring every document under ``dest`` to its planned bytes; return doc id → SHA-256."""
    hashes: dict[int, str] = {}
    pending: list[tuple[int, Future[str]]] = []
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="datagen") as writer:
        for doc in docs:
            path = dest / doc.path
            if _up_to_date(path, doc):
                pending.append((doc.doc_id, writer.submit(_hash_file, path)))
            else:
                # generate here while the writer threads hash and write the previous files
                chunks = list(_content(seed, doc))
                pending.append((doc.doc_id, writer.submit(_write, path, chunks, doc.mtime)))
            while len(pending) > 4:  # bounds the memory held by queued files
                doc_id, future = pending.pop(0)
                hashes[doc_id] = future.result()
        for doc_id, future in pending:
            hashes[doc_id] = future.result()
    return hashes


def _prune(dest: Path, keep: set[str]) -> None:
    """Delete files under dest/documents that are not planned, then empty folders."""
    top = dest / DOCUMENTS
    if not top.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(top, topdown=False):
        here = Path(dirpath)
        for name in filenames:
            path = here / name
            # a planned path that is a symlink goes too: writing through it could land anywhere
            if path.is_symlink() or path.relative_to(dest).as_posix() not in keep:
                path.unlink()
        for name in dirnames:
            sub = here / name
            if sub.is_symlink():
                sub.unlink()
            elif not any(sub.iterdir()):
                sub.rmdir()


# --- the database ---------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE documents (
    id INTEGER PRIMARY KEY,
    path TEXT UNIQUE,
    title TEXT NOT NULL,
    unit TEXT NOT NULL,
    year INTEGER NOT NULL,
    kind TEXT,
    size INTEGER,
    sha256 TEXT,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX documents_unit_year ON documents (unit, year);
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    day INTEGER NOT NULL,
    document_id INTEGER NOT NULL,
    action TEXT NOT NULL,
    at TEXT NOT NULL
);
"""


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_Row = tuple[int, str | None, str, str, int, str | None, int | None, str | None, int, str, str]


def _fill(target: str | Path, state: _State, hashes: dict[int, str]) -> int:
    """Create the app.db tables at ``target`` (a path or ":memory:") from ``state``; return
    the database's size in bytes. ``hashes`` maps doc id → SHA-256 (missing: zeros)."""
    rows: list[_Row] = []
    for doc in sorted(state.docs.values(), key=lambda d: d.doc_id):
        created = DAY0 + doc.created_day * DAY if doc.created_day else doc.mtime
        rows.append((doc.doc_id, doc.path, doc.title, doc.unit, doc.year, doc.kind, doc.size,
                     hashes.get(doc.doc_id, "0" * 64), doc.version, _iso(created),
                     _iso(doc.mtime)))
    for paper_id, title, unit, year, created_day in state.paper:
        stamp = _iso(DAY0 + created_day * DAY)
        rows.append((paper_id, None, title, unit, year, None, None, None, 1, stamp, stamp))
    rows.sort(key=lambda r: r[0])
    audit = [(i, e.day, e.doc_id, e.action, _iso(e.at))
             for i, e in enumerate(state.events, start=1)]
    db = sqlite3.connect(target, isolation_level=None)
    try:
        db.execute("PRAGMA page_size = 4096")
        db.executescript(_SCHEMA)
        db.execute("BEGIN")
        db.executemany("INSERT INTO documents VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        db.executemany("INSERT INTO audit_log VALUES (?,?,?,?,?)", audit)
        db.execute("COMMIT")
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    finally:
        db.close()
    return int(pages) * 4096


def _db_rows(state: _State) -> int:
    return len(state.docs) + len(state.paper) + len(state.events)


def _write_database(dest: Path, state: _State, hashes: dict[int, str], day: int) -> None:
    """Build app.db from scratch (same statements → same bytes) and swap it in."""
    tmp = dest / f".{DATABASE}.tmp"
    tmp.unlink(missing_ok=True)
    _fill(tmp, state, hashes)
    stamp = DAY0 + day * DAY + 23 * 3600  # the nightly dump time of that day
    os.utime(tmp, ns=(stamp * 10**9, stamp * 10**9))
    tmp.replace(dest / DATABASE)


# --- public ---------------------------------------------------------------------------------


def _manifest_line(digest: str, size: int, rel: str) -> str:
    return f"{digest} {size} {rel}\n"


def _manifest_sha256(lines: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for _, line in sorted(lines):
        digest.update(line.encode())
    return digest.hexdigest()


def generate(dest: Path, seed: str, size_mb: float, files: int, day: int = 0,
             change_rate: float = 0.05) -> DataSummary:
    """Make ``dest`` hold day ``day`` of the data set ``seed``: ``files`` documents on day 0
    (about ``size_mb`` MiB in all, app.db included), changed day by day at ``change_rate``.

    Writes only what differs from what ``dest`` already holds; deletes files under
    ``dest/documents`` that are not part of that day; leaves anything else in ``dest`` alone.
    Returns the :class:`DataSummary`. Raises ValueError on a bad argument, OSError when
    ``dest`` cannot be written.
    """
    if size_mb <= 0 or files < 1 or day < 0 or not 0 <= change_rate <= 1:
        raise ValueError("size_mb > 0, files >= 1, day >= 0 and 0 <= change_rate <= 1")
    state = _plan(seed, round(size_mb * MIB), files, day, change_rate)
    docs = sorted(state.docs.values(), key=lambda d: d.doc_id)
    dest.mkdir(parents=True, exist_ok=True)
    _prune(dest, {doc.path for doc in docs})
    hashes = _write_documents(dest, seed, docs)
    _write_database(dest, state, hashes, day)
    db_size = (dest / DATABASE).stat().st_size
    lines = [(doc.path, _manifest_line(hashes[doc.doc_id], doc.size, doc.path)) for doc in docs]
    lines.append((DATABASE, _manifest_line(_hash_file(dest / DATABASE), db_size, DATABASE)))
    return DataSummary(
        files=len(docs) + 1,
        bytes=sum(doc.size for doc in docs) + db_size,
        db_rows=_db_rows(state),
        manifest_sha256=_manifest_sha256(lines),
    )


def manifest_digest(root: Path) -> str:
    """The manifest SHA-256 of the data set under ``root`` as it is on disk (documents/ and
    app.db; symlinks and other entries ignored). Equal to ``generate(...).manifest_sha256``
    exactly when the bytes and paths are the same — how a restore is checked."""
    lines: list[tuple[str, str]] = []
    candidates = [root / DATABASE]
    top = root / DOCUMENTS
    if top.is_dir():
        for dirpath, _dirs, filenames in os.walk(top):
            candidates += [Path(dirpath) / name for name in filenames]
    for path in candidates:
        if path.is_file() and not path.is_symlink():
            rel = path.relative_to(root).as_posix()
            lines.append((rel, _manifest_line(_hash_file(path), path.stat().st_size, rel)))
    return _manifest_sha256(lines)
