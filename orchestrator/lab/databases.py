"""Deterministic synthetic database content for the lab's database engines.

Two data sets, one per engine the lab runs in its guests:

- ``postgresql`` — the public-service portal's (DVC) citizens' applications:
  ``applications`` (one row per application: procedure, agency, applicant, channel, times and
  its current status), ``application_status`` (its status history, ``changed_at
  timestamptz``) and ``attachments`` (metadata of the files handed in);
- ``mariadb`` — the data-sharing platform's (LGSP) exchanged documents: ``documents``,
  ``document_metadata`` (key/value rows) and ``exchange_log`` (each send or receipt,
  ``exchanged_at DATETIME(6)`` in UTC).

Content follows from ``(seed, rows)`` and an explicit ``now``: record times lie in the year
before ``now`` (denser towards it, the newest minutes before it), so the same seed and ``now``
give the same rows, and a later ``now`` the same rows shifted in time. ``rows`` is the number
of main records (applications, documents); the history tables hold about 2-4 times as many.
:func:`day_change` is one day of activity at the lab's change rate (new records, status
changes, re-sent documents), its times in the day before its own ``now``.

Everything here is pure (no engine needed): text for ``COPY … FROM STDIN`` / ``LOAD DATA``
(:func:`tsv`), the schema, and SQL scripts that apply a day (:func:`change_sql`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

#: the engines with a data set, and the database each seeds by default
ENGINES = ("postgresql", "mariadb")
#: how far back the records go before ``now``
HISTORY = timedelta(days=365)
#: the newest initial record is at most this long before ``now``
FRESHEST = timedelta(minutes=5)

Value = int | str | datetime | None


@dataclass(frozen=True)
class Table:
    """Rows for one table, in its column order (identity columns left to the engine)."""

    name: str
    columns: tuple[str, ...]
    rows: list[tuple[Value, ...]] = field(default_factory=list)


@dataclass(frozen=True)
class StatusChange:
    """An application's (or document's) new status at ``at``: the main row is updated."""

    record_id: int
    status: str
    at: datetime


@dataclass(frozen=True)
class Change:
    """One day of activity: rows added (tables in load order) and main rows updated."""

    inserts: list[Table]
    updates: list[StatusChange]


# --- vocabulary -----------------------------------------------------------------------------

FAMILY = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng",
          "Bùi", "Đỗ", "Hồ", "Ngô", "Dương", "Lý")
MIDDLE = ("Văn", "Thị", "Hữu", "Minh", "Ngọc", "Thanh", "Đức", "Quốc", "Thu", "Gia", "Anh")
GIVEN = ("An", "Bình", "Châu", "Dũng", "Giang", "Hà", "Hải", "Hạnh", "Hùng", "Hương", "Khánh",
         "Lan", "Linh", "Long", "Mai", "Nam", "Nga", "Phong", "Phúc", "Quân", "Sơn", "Tâm",
         "Thảo", "Trang", "Trung", "Tuấn", "Vy", "Yến")
#: procedure code → (name, agency, days allowed)
PROCEDURES = (
    ("1.001193", "Đăng ký khai sinh", "ubnd-xa", 1),
    ("1.000894", "Đăng ký kết hôn", "ubnd-xa", 3),
    ("2.000488", "Cấp phiếu lý lịch tư pháp", "so-tu-phap", 10),
    ("1.009994", "Cấp giấy phép xây dựng nhà ở riêng lẻ", "ubnd-huyen", 15),
    ("2.000720", "Đăng ký thành lập hộ kinh doanh", "ubnd-huyen", 3),
    ("1.004227", "Cấp đổi giấy phép lái xe", "so-giao-thong-van-tai", 5),
    ("1.001612", "Đăng ký biến động quyền sử dụng đất", "van-phong-dang-ky-dat-dai", 10),
    ("2.001023", "Cấp giấy chứng nhận đủ điều kiện an toàn thực phẩm", "so-y-te", 20),
    ("1.003003", "Xác nhận thông tin cư trú", "cong-an-xa", 2),
    ("2.002154", "Cấp bản sao trích lục hộ tịch", "ubnd-xa", 1),
)
CHANNELS = ("truc-tuyen", "truc-tuyen", "truc-tuyen", "truc-tiep", "buu-chinh")
#: an application's path through its statuses (``bo-sung``: more papers requested)
FLOW = ("tiep-nhan", "dang-xu-ly", "bo-sung", "dang-xu-ly", "da-duyet", "tra-ket-qua")
OFFICERS = tuple(f"cb{i:03d}" for i in range(1, 41))
ATTACHMENT_KINDS = (
    ("don-de-nghi", ".pdf", "application/pdf"),
    ("cccd", ".jpg", "image/jpeg"),
    ("ban-ve", ".pdf", "application/pdf"),
    ("giay-to-kem-theo", ".docx",
     "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
)
UNITS = ("so-noi-vu", "so-tai-chinh", "so-tu-phap", "so-y-te", "so-giao-duc-dao-tao",
         "so-xay-dung", "so-ke-hoach-dau-tu", "so-tai-nguyen-moi-truong", "thanh-tra-tinh",
         "van-phong-ubnd")
PEERS = ("ndxp", "lgsp-quang-nam", "lgsp-hue", "bo-tai-chinh", "bo-cong-an", "bhxh-viet-nam")
#: document type → its title's first words
DOC_TYPES = {"cong-van": "Công văn", "quyet-dinh": "Quyết định", "to-trinh": "Tờ trình",
             "bao-cao": "Báo cáo", "ke-hoach": "Kế hoạch", "giay-moi": "Giấy mời"}
SUBJECTS = ("sắp xếp đơn vị hành chính", "chuyển đổi số", "ngân sách năm",
            "cải cách thủ tục hành chính", "phòng chống thiên tai", "đầu tư công",
            "dữ liệu dân cư", "y tế cơ sở")
EXCHANGE_STATUS = ("thanh-cong", "thanh-cong", "thanh-cong", "thanh-cong", "loi-ket-noi")


# --- schemas --------------------------------------------------------------------------------

POSTGRESQL_SCHEMA = """\
CREATE TABLE applications (
    id bigint PRIMARY KEY,
    code text NOT NULL UNIQUE,
    procedure_code text NOT NULL,
    procedure_name text NOT NULL,
    agency text NOT NULL,
    applicant_name text NOT NULL,
    applicant_id text NOT NULL,
    phone text,
    channel text NOT NULL,
    submitted_at timestamptz NOT NULL,
    due_at timestamptz NOT NULL,
    status text NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE application_status (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    application_id bigint NOT NULL,
    status text NOT NULL,
    changed_at timestamptz NOT NULL,
    changed_by text NOT NULL,
    note text
);
CREATE TABLE attachments (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    application_id bigint NOT NULL,
    file_name text NOT NULL,
    content_type text NOT NULL,
    size_bytes bigint NOT NULL,
    sha256 char(64) NOT NULL,
    uploaded_at timestamptz NOT NULL
);
"""
#: what PostgreSQL's tables get once loaded (faster than checking and indexing row by row)
POSTGRESQL_INDEXES = """\
ALTER TABLE application_status ADD FOREIGN KEY (application_id) REFERENCES applications (id);
ALTER TABLE attachments ADD FOREIGN KEY (application_id) REFERENCES applications (id);
CREATE INDEX application_status_application ON application_status (application_id);
CREATE INDEX application_status_changed_at ON application_status (changed_at);
CREATE INDEX attachments_application ON attachments (application_id);
"""
MARIADB_SCHEMA = """\
CREATE TABLE documents (
    id BIGINT PRIMARY KEY,
    doc_code VARCHAR(64) NOT NULL UNIQUE,
    title VARCHAR(500) NOT NULL,
    doc_type VARCHAR(32) NOT NULL,
    sender VARCHAR(64) NOT NULL,
    receiver VARCHAR(64) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256 CHAR(64) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE document_metadata (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    document_id BIGINT NOT NULL,
    meta_key VARCHAR(64) NOT NULL,
    meta_value VARCHAR(500) NOT NULL,
    KEY document_metadata_document (document_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE exchange_log (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    document_id BIGINT NOT NULL,
    direction VARCHAR(8) NOT NULL,
    peer VARCHAR(64) NOT NULL,
    status VARCHAR(16) NOT NULL,
    exchanged_at DATETIME(6) NOT NULL,
    duration_ms INT NOT NULL,
    KEY exchange_log_exchanged_at (exchanged_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
"""

APPLICATION_COLUMNS = ("id", "code", "procedure_code", "procedure_name", "agency",
                       "applicant_name", "applicant_id", "phone", "channel", "submitted_at",
                       "due_at", "status", "updated_at")
STATUS_COLUMNS = ("application_id", "status", "changed_at", "changed_by", "note")
ATTACHMENT_COLUMNS = ("application_id", "file_name", "content_type", "size_bytes", "sha256",
                      "uploaded_at")
DOCUMENT_COLUMNS = ("id", "doc_code", "title", "doc_type", "sender", "receiver", "created_at",
                    "size_bytes", "sha256")
METADATA_COLUMNS = ("document_id", "meta_key", "meta_value")
EXCHANGE_COLUMNS = ("document_id", "direction", "peer", "status", "exchanged_at",
                    "duration_ms")
#: each engine's tables and the columns its rows fill, in load order
COLUMNS = {
    "postgresql": (("applications", APPLICATION_COLUMNS), ("application_status", STATUS_COLUMNS),
                   ("attachments", ATTACHMENT_COLUMNS)),
    "mariadb": (("documents", DOCUMENT_COLUMNS), ("document_metadata", METADATA_COLUMNS),
                ("exchange_log", EXCHANGE_COLUMNS)),
}
TABLES = {engine: tuple(name for name, _columns in tables) for engine, tables in COLUMNS.items()}


def schema_sql(engine: str) -> str:
    """The CREATE TABLE statements of ``engine``'s data set (PostgreSQL's foreign keys and
    secondary indexes come after the load: :data:`POSTGRESQL_INDEXES`)."""
    return {"postgresql": POSTGRESQL_SCHEMA, "mariadb": MARIADB_SCHEMA}[_engine(engine)]


def _engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ValueError(f"no synthetic data set for engine {engine!r}")
    return engine


# --- generation -----------------------------------------------------------------------------


def _rng(*parts: object) -> random.Random:
    # str seeds are hashed with SHA-512 by Random: stable across runs and PYTHONHASHSEED
    return random.Random("|".join(str(p) for p in parts))  # noqa: S311 - test data, not crypto


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime (UTC)")
    return now.astimezone(UTC)


def _ages(rng: random.Random, count: int, span: timedelta, freshest: timedelta) -> list[int]:
    """``count`` ages in microseconds, oldest first, in ``[freshest, span)``: denser towards
    ``now`` (activity grows), the youngest exactly ``freshest`` old."""
    width = int((span - freshest).total_seconds() * 1e6)
    base = int(freshest.total_seconds() * 1e6)
    ages = sorted((base + int(width * rng.random() ** 2) for _ in range(count)), reverse=True)
    if ages:
        ages[-1] = base
    return ages


def _person(rng: random.Random) -> tuple[str, str, str]:
    name = f"{rng.choice(FAMILY)} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}"
    return name, f"0{rng.randrange(10**11):011d}", f"09{rng.randrange(10**8):08d}"


@dataclass
class _Applications:
    """Rows of the PostgreSQL data set under construction."""

    applications: list[tuple[Value, ...]] = field(default_factory=list)
    statuses: list[tuple[Value, ...]] = field(default_factory=list)
    attachments: list[tuple[Value, ...]] = field(default_factory=list)

    def tables(self) -> list[Table]:
        return [Table("applications", APPLICATION_COLUMNS, self.applications),
                Table("application_status", STATUS_COLUMNS, self.statuses),
                Table("attachments", ATTACHMENT_COLUMNS, self.attachments)]


def _application(out: _Applications, rng: random.Random, app_id: int, submitted: datetime,
                 now: datetime) -> None:
    """One application submitted at ``submitted`` with its history up to ``now``."""
    code, name, agency, days = rng.choice(PROCEDURES)
    applicant, id_number, phone = _person(rng)
    steps = rng.choice((1, 2, 2, 3, 3, 4, 5, 6))
    flow = FLOW[:steps] if steps < 6 or rng.random() < 0.8 else (*FLOW[:4], "tu-choi")
    at = submitted
    for index, status in enumerate(flow):
        if index:
            room = (now - at) / (len(flow) - index + 1)
            at = at + room * rng.random()
        out.statuses.append((app_id, status, at, "cong-dan" if index == 0 else
                             rng.choice(OFFICERS), None if status != "bo-sung" else
                             "Đề nghị bổ sung giấy tờ"))
    for number in range(rng.choice((0, 1, 1, 2, 3))):
        kind, ext, mime = rng.choice(ATTACHMENT_KINDS)
        out.attachments.append((app_id, f"{kind}-{number + 1}{ext}", mime,
                                int(rng.lognormvariate(12, 1.2)) + 1024,
                                rng.randbytes(32).hex(), submitted))
    out.applications.append((
        app_id, f"H48.{days:02d}-{submitted:%y%m%d}-{app_id:07d}", code, name, agency,
        applicant, id_number, phone if rng.random() < 0.9 else None, rng.choice(CHANNELS),
        submitted, submitted + timedelta(days=days), flow[-1], at))


@dataclass
class _Documents:
    """Rows of the MariaDB data set under construction."""

    documents: list[tuple[Value, ...]] = field(default_factory=list)
    metadata: list[tuple[Value, ...]] = field(default_factory=list)
    exchanges: list[tuple[Value, ...]] = field(default_factory=list)

    def tables(self) -> list[Table]:
        return [Table("documents", DOCUMENT_COLUMNS, self.documents),
                Table("document_metadata", METADATA_COLUMNS, self.metadata),
                Table("exchange_log", EXCHANGE_COLUMNS, self.exchanges)]


def _exchange(out: _Documents, rng: random.Random, doc_id: int, at: datetime) -> None:
    out.exchanges.append((doc_id, rng.choice(("gui", "nhan")), rng.choice(PEERS),
                          rng.choice(EXCHANGE_STATUS), at, rng.randrange(20, 4000)))


def _document(out: _Documents, rng: random.Random, doc_id: int, created: datetime,
              now: datetime) -> None:
    """One exchanged document created at ``created``: its metadata and its exchanges."""
    kind = rng.choice(sorted(DOC_TYPES))
    sender, receiver = rng.sample(UNITS, 2)
    number = f"{doc_id}/{created:%Y}/{sender.upper()}"
    out.documents.append((doc_id, f"{kind}-{created:%Y%m%d}-{doc_id:07d}",
                          f"{DOC_TYPES[kind]} số {number} về "
                          f"{rng.choice(SUBJECTS)}", kind, sender, receiver, created,
                          int(rng.lognormvariate(11, 1.5)) + 512, rng.randbytes(32).hex()))
    for key, value in (("so-ky-hieu", number), ("do-khan", rng.choice(("thuong", "khan"))),
                       ("nguoi-ky", " ".join(_person(rng)[0].split()[::2])),
                       ("so-trang", str(rng.randrange(1, 40)))):
        out.metadata.append((doc_id, key, value))
    at = created
    for _ in range(rng.choice((1, 1, 2, 3))):
        at = at + (now - at) * rng.random() * 0.1
        _exchange(out, rng, doc_id, at)


#: main records per chunk of :func:`initial_chunks`
CHUNK = 5000


def initial_chunks(engine: str, seed: str, rows: int, now: datetime,
                   chunk: int = CHUNK) -> Iterator[list[Table]]:
    """:func:`initial`'s tables ``chunk`` main records at a time (with their history), in
    order: concatenated, they are :func:`initial`'s rows. A large data set never has to be
    in memory at once."""
    now = _utc(now)
    rng = _rng(_engine(engine), seed, "initial", rows)
    ages = _ages(rng, rows, HISTORY, FRESHEST)
    for start in range(0, rows, chunk):
        builder: _Applications | _Documents
        builder = _Applications() if engine == "postgresql" else _Documents()
        for index in range(start, min(rows, start + chunk)):
            created = now - timedelta(microseconds=ages[index])
            if isinstance(builder, _Applications):
                _application(builder, rng, index + 1, created, now - FRESHEST)
            else:
                _document(builder, rng, index + 1, created, now - FRESHEST)
        yield builder.tables()


def initial(engine: str, seed: str, rows: int, now: datetime) -> list[Table]:
    """The data set of ``engine`` as first seeded: ``rows`` main records (ids 1..rows, in
    time order) with their history, every time in the year before ``now`` (the newest
    :data:`FRESHEST` before it). Deterministic in ``(engine, seed, rows, now)``."""
    merged = [Table(name, columns) for name, columns in COLUMNS[_engine(engine)]]
    for tables in initial_chunks(engine, seed, rows, now):
        for whole, part in zip(merged, tables, strict=True):
            whole.rows.extend(part.rows)
    return merged


def daily_count(rows: int, change_rate: float) -> int:
    """How many main records a day adds (and how many it changes): ``rows × change_rate``,
    at least one when the rate is not 0."""
    if change_rate <= 0:
        return 0
    return max(1, round(rows * change_rate))


def day_change(engine: str, seed: str, rows: int, day: int, now: datetime,
               change_rate: float) -> Change:
    """Day ``day`` (1, 2, …) of activity after :func:`initial`, its times in the day before
    ``now``: :func:`daily_count` new main records (ids following days ``1..day-1``'s) and as
    many changes to records that existed before the day (an application's next status; a
    document exchanged again). Deterministic in its arguments; apply days in order."""
    if day < 1:
        raise ValueError("day counts from 1 (day 0 is the initial data set)")
    now = _utc(now)
    rng = _rng(_engine(engine), seed, "day", rows, day, change_rate)
    count = daily_count(rows, change_rate)
    first = rows + (day - 1) * count + 1
    existing = first - 1
    ages = _ages(rng, count, timedelta(days=1), timedelta(seconds=1))
    if engine == "postgresql":
        apps = _Applications()
        for offset, age in enumerate(ages):
            _application(apps, rng, first + offset, now - timedelta(microseconds=age), now)
        updates = []
        for age in _ages(rng, count if existing else 0, timedelta(days=1),
                         timedelta(seconds=1)):
            at = now - timedelta(microseconds=age)
            record, status = rng.randint(1, existing), rng.choice(FLOW[1:])
            apps.statuses.append((record, status, at, rng.choice(OFFICERS), None))
            updates.append(StatusChange(record, status, at))
        return Change(apps.tables(), updates)
    docs = _Documents()
    for offset, age in enumerate(ages):
        _document(docs, rng, first + offset, now - timedelta(microseconds=age), now)
    for age in _ages(rng, count if existing else 0, timedelta(days=1), timedelta(seconds=1)):
        _exchange(docs, rng, rng.randint(1, existing), now - timedelta(microseconds=age))
    return Change(docs.tables(), [])


# --- text for the engines -------------------------------------------------------------------


#: COPY's and LOAD DATA's escapes (backslash first: str.translate maps each character once)
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _stamp(value: datetime, engine: str) -> str:
    """A time in UTC, to the microsecond: with its offset for PostgreSQL's timestamptz,
    without for MariaDB's DATETIME(6) (which holds UTC here)."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    if engine == "postgresql":
        return value.isoformat(" ", "microseconds")
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _text(value: Value, engine: str) -> str:
    if value is None:
        raise TypeError("None has no text form")
    if isinstance(value, datetime):
        return _stamp(value, engine)
    return str(value)


def _tsv_field(value: Value, engine: str) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    if isinstance(value, datetime):
        return _stamp(value, engine)
    return str(value)


def tsv_lines(table: Table, engine: str) -> Iterator[str]:
    """The rows of ``table`` as lines (with their newline) in the text format both
    PostgreSQL's ``COPY … FROM STDIN`` and MariaDB's ``LOAD DATA`` read by default: tab
    separated, ``\\N`` for NULL, backslash escapes; times in UTC."""
    for row in table.rows:
        yield "\t".join(_tsv_field(v, engine) for v in row) + "\n"


def tsv(table: Table, engine: str) -> str:
    """:func:`tsv_lines` joined."""
    return "".join(tsv_lines(table, engine))


def identifier(name: str, engine: str) -> str:
    """``name`` quoted as an SQL identifier of ``engine``."""
    quote = '"' if engine == "postgresql" else "`"
    return quote + name.replace(quote, quote * 2) + quote


def literal(value: Value, engine: str) -> str:
    """``value`` as an SQL literal of ``engine`` (PostgreSQL with standard conforming
    strings; MariaDB's backslash escapes doubled)."""
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    text = _text(value, engine)
    if engine == "mariadb":
        text = text.replace("\\", "\\\\")
    return "'" + text.replace("'", "''") + "'"


def copy_blocks(tables: list[Table]) -> str:
    """One ``COPY … FROM STDIN`` block of psql script per table, its rows inline."""
    parts = []
    for table in tables:
        columns = ", ".join(identifier(c, "postgresql") for c in table.columns)
        parts.append(f"COPY {identifier(table.name, 'postgresql')} ({columns}) FROM STDIN;\n")
        parts.extend(tsv_lines(table, "postgresql"))
        parts.append("\\.\n")
    return "".join(parts)


def copy_script_parts(chunks: Iterable[list[Table]]) -> Iterator[str]:
    """A psql script loading the PostgreSQL data set in one transaction, piece by piece:
    the schema, a :func:`copy_blocks` per chunk, then the foreign keys and indexes."""
    yield "BEGIN;\n" + POSTGRESQL_SCHEMA
    for tables in chunks:
        yield copy_blocks(tables)
    yield POSTGRESQL_INDEXES + "COMMIT;\n"


def copy_script(tables: list[Table]) -> str:
    """:func:`copy_script_parts` of ``tables`` whole, as one text."""
    return "".join(copy_script_parts([tables]))


def load_data_sql(table: Table, path: str) -> str:
    """MariaDB's statement loading ``table`` from the :func:`tsv` file at ``path`` (read by
    the client: ``LOCAL``)."""
    columns = ", ".join(identifier(c, "mariadb") for c in table.columns)
    return (f"LOAD DATA LOCAL INFILE {literal(path, 'mariadb')} INTO TABLE "
            f"{identifier(table.name, 'mariadb')} CHARACTER SET utf8mb4 ({columns});\n")


def insert_sql(table: Table, engine: str, batch: int = 500) -> Iterator[str]:
    """``INSERT`` statements of ``batch`` rows each for ``table``."""
    columns = ", ".join(identifier(c, engine) for c in table.columns)
    head = f"INSERT INTO {identifier(table.name, engine)} ({columns}) VALUES\n"
    for start in range(0, len(table.rows), batch):
        values = ",\n".join("(" + ", ".join(literal(v, engine) for v in row) + ")"
                            for row in table.rows[start:start + batch])
        yield head + values + ";\n"


def change_sql(engine: str, change: Change) -> str:
    """One transaction applying ``change``: its rows inserted in batches, then each changed
    application's current status and time updated."""
    parts = ["BEGIN;\n" if engine == "postgresql" else "START TRANSACTION;\n"]
    for table in change.inserts:
        parts.extend(insert_sql(table, engine))
    for update in change.updates:
        # every value below went through literal(): the engine's own quoting
        status, at = literal(update.status, engine), literal(update.at, engine)
        parts.append(f"UPDATE applications SET status = {status}, updated_at = {at} "  # noqa: S608
                     f"WHERE id = {update.record_id} AND updated_at < {at};\n")
    parts.append("COMMIT;\n")
    return "".join(parts)


def counts(tables: list[Table]) -> dict[str, int]:
    """Rows per table."""
    return {table.name: len(table.rows) for table in tables}
