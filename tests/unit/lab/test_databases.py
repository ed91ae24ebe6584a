"""The lab's synthetic database content: deterministic from (seed, rows, now), shaped like
the systems' own data, times anchored at the ``now`` given, a day's change that follows on;
and which guests run which engine, from the estate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.errors import LabError
from orchestrator.lab import control, databases, guests
from orchestrator.lab.config import DataSpec, lab_vcenters, legacy_vms, load_lab_config
from orchestrator.lab.databases import (
    FRESHEST,
    HISTORY,
    Table,
    change_sql,
    copy_script,
    counts,
    daily_count,
    day_change,
    initial,
    literal,
    load_data_sql,
    tsv,
)
from orchestrator.lab.engines import guest_engines
from orchestrator.lab.guest_engines import EngineSpec
from orchestrator.lab.hypervisor import Hypervisor, VMState
from orchestrator.settings import Paths
from tests.helpers import EstateCopy

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
ENGINES = ("postgresql", "mariadb")
#: each engine's main table, its history table and the history's time column
SHAPE = {"postgresql": ("applications", "application_status", "changed_at"),
         "mariadb": ("documents", "exchange_log", "exchanged_at")}


def _times(tables: list[Table]) -> list[datetime]:
    return [v for t in tables for row in t.rows for v in row if isinstance(v, datetime)]


@pytest.mark.parametrize("engine", ENGINES)
def test_the_same_seed_rows_and_now_give_the_same_rows(engine: str) -> None:
    assert initial(engine, "dvc", 400, NOW) == initial(engine, "dvc", 400, NOW)
    assert initial(engine, "dvc", 400, NOW) != initial(engine, "lgsp", 400, NOW)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_later_now_gives_the_same_rows_later(engine: str) -> None:
    shift = timedelta(days=3, seconds=7)
    before, later = initial(engine, "seed", 300, NOW), initial(engine, "seed", 300, NOW + shift)
    assert counts(later) == counts(before)
    assert _times(later) == [t + shift for t in _times(before)]


@pytest.mark.parametrize("engine", ENGINES)
def test_the_data_set_has_its_shape_and_rows_as_asked(engine: str) -> None:
    main, history, column = SHAPE[engine]
    tables = initial(engine, "seed", 1000, NOW)
    assert [t.name for t in tables] == list(databases.TABLES[engine])
    sizes = counts(tables)
    assert sizes[main] == 1000
    assert 1000 <= sizes[history] <= 6000
    assert sum(sizes.values()) > 2500
    for table in tables:
        assert all(len(row) == len(table.columns) for row in table.rows), table.name
        assert table.columns[0] not in ("id",) or table.name == main
    first = tables[0]
    assert [row[0] for row in first.rows] == list(range(1, 1001))
    # ids follow time: record 1 is the oldest
    created = [next(v for v in row if isinstance(v, datetime)) for row in first.rows]
    assert created == sorted(created)
    times = _times(tables)
    # every time in the year before now; the newest record exactly FRESHEST before it
    table = next(t for t in tables if t.name == history)
    stamps = [row[table.columns.index(column)] for row in table.rows]
    assert max(t for t in stamps if isinstance(t, datetime)) == NOW - FRESHEST
    assert all(t >= NOW - HISTORY for t in times if t <= NOW)
    # only an application's processing deadline lies ahead
    future = [t for t in times if t > NOW]
    assert engine == "postgresql" or not future


def test_the_applications_read_as_a_portals() -> None:
    apps, statuses, attachments = initial("postgresql", "seed", 200, NOW)
    columns = dict(zip(apps.columns, apps.rows[0], strict=True))
    assert str(columns["procedure_name"]) in {p[1] for p in databases.PROCEDURES}
    assert str(columns["applicant_id"]).isdigit() and len(str(columns["applicant_id"])) == 12
    assert str(columns["code"]).startswith("H48.")
    # an application's current status is the last of its history
    history: dict[object, list[tuple[object, ...]]] = {}
    for row in statuses.rows:
        history.setdefault(row[0], []).append(row)
    for row in apps.rows:
        last = history[row[0]][-1]
        assert (row[11], row[12]) == (last[1], last[2])
        assert history[row[0]][0][1] == "tiep-nhan"
    assert {row[0] for row in attachments.rows} <= {row[0] for row in apps.rows}


@pytest.mark.parametrize("engine", ENGINES)
def test_a_day_adds_and_changes_at_the_change_rate(engine: str) -> None:
    main, history, _column = SHAPE[engine]
    day_now = NOW + timedelta(days=2)
    one = day_change(engine, "seed", 1000, 2, day_now, 0.05)
    assert one == day_change(engine, "seed", 1000, 2, day_now, 0.05)
    assert one != day_change(engine, "seed", 1000, 1, day_now, 0.05)
    sizes = counts(one.inserts)
    assert daily_count(1000, 0.05) == 50
    assert sizes[main] == 50
    # day 2's new records follow day 1's: ids 1001..1050 were day 1's
    assert [row[0] for row in one.inserts[0].rows] == list(range(1051, 1101))
    times = _times(one.inserts)
    assert all(day_now - timedelta(days=1) < t <= day_now for t in times
               if not (engine == "postgresql" and t > day_now))
    if engine == "postgresql":
        assert len(one.updates) == 50
        assert all(1 <= u.record_id <= 1050 for u in one.updates)
        assert sizes[history] >= 50 + 50  # the new applications' first status, the changes
    else:
        changed = [row for row in one.inserts[2].rows if int(str(row[0])) <= 1050]
        assert len(changed) == 50
    assert day_change(engine, "seed", 1000, 1, NOW, 0).inserts[0].rows == []
    with pytest.raises(ValueError, match="day counts from 1"):
        day_change(engine, "seed", 1000, 0, NOW, 0.05)


def test_now_must_say_its_zone() -> None:
    with pytest.raises(ValueError, match="aware"):
        initial("postgresql", "seed", 10, datetime(2026, 12, 7))


def test_text_for_the_engines_escapes_what_would_break_a_row_or_a_statement() -> None:
    table = Table("t", ("a", "b", "c"), [(1, "tab\there\nnew\\line", None),
                                         (2, "it's", NOW)])
    assert tsv(table, "postgresql") == ("1\ttab\\there\\nnew\\\\line\t\\N\n"
                                        "2\tit's\t2026-12-07 03:00:00.000000+00:00\n")
    assert tsv(table, "mariadb").splitlines()[1] == "2\tit's\t2026-12-07 03:00:00.000000"
    assert literal("it's \\", "postgresql") == "'it''s \\'"
    assert literal("it's \\", "mariadb") == "'it''s \\\\'"
    assert literal(None, "mariadb") == "NULL"
    assert literal(7, "postgresql") == "7"
    assert load_data_sql(table, "/tmp/t.tsv") == (
        "LOAD DATA LOCAL INFILE '/tmp/t.tsv' INTO TABLE `t` CHARACTER SET utf8mb4 "
        "(`a`, `b`, `c`);\n")


def test_the_scripts_load_and_change_in_one_transaction() -> None:
    tables = initial("postgresql", "seed", 20, NOW)
    script = copy_script(tables)
    assert script.startswith("BEGIN;\n") and "COMMIT;\n" in script
    assert script.count("FROM STDIN;\n") == 3 and script.count("\n\\.\n") == 3
    change = day_change("postgresql", "seed", 20, 1, NOW, 0.1)
    sql = change_sql("postgresql", change)
    assert sql.startswith("BEGIN;\n") and sql.endswith("COMMIT;\n")
    assert sql.count("UPDATE applications") == len(change.updates) == 2
    assert change_sql("mariadb", day_change("mariadb", "s", 20, 1, NOW, 0.1)).startswith(
        "START TRANSACTION;\n")


def test_lab_yml_sizes_the_databases() -> None:
    assert DataSpec().db_rows == 20000
    assert DataSpec(db_rows=500).db_rows == 500
    with pytest.raises(ValidationError):
        DataSpec(db_rows=0)


def test_the_estate_says_which_guest_runs_which_engine(estate_copy: EstateCopy) -> None:
    found = guest_engines(estate_copy.load(), 123)
    assert found == {
        "dvc-db-01": [{"engine": "postgresql", "database": "dvc", "cluster": "dvc",
                       "seed": "danang/dvc-db-01/postgresql/dvc", "rows": 123}],
        "lgsp-esb-01": [{"engine": "mariadb", "database": "lgsp", "cluster": "lgsp",
                         "seed": "danang/lgsp-esb-01/mariadb/lgsp", "rows": 123}],
    }
    # a SQLite database runs no engine; a second database of one engine is one more entry
    estate_copy.edit("systems/dvc.yml", lambda data: data["backup"]["databases"].extend([
        {"name": "files", "engine": "sqlite", "database": "/srv/dvc/app.db"},
        {"name": "audit", "engine": "postgresql", "database": "audit"}]))
    assert [e["database"] for e in guest_engines(estate_copy.load(), 5)["dvc-db-01"]] == [
        "dvc", "audit"]


def test_the_hypervisor_starts_a_data_vms_guest_with_its_engines_and_a_legacy_one_without(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: dict[str, object] = {}

    def start(_lab: Path, _table: object, name: str, *_args: object, **options: object) -> None:
        started[name] = options.get("engines")

    monkeypatch.setattr(guests, "start_guest", start)
    engine = {"engine": "postgresql", "database": "dvc", "cluster": "dvc", "seed": "s",
              "rows": 10}
    hv = Hypervisor({
        "lab_dir": str(tmp_path), "known_hosts": str(tmp_path / "known_hosts"),
        "authorized_keys": ["ssh-ed25519 AAAAhopnhat"], "operator_keys": ["ssh-ed25519 AAAAop"],
        "legacy": {"dvc-db-01.dc-danang": {"publish_fingerprint": False, "data": None}},
        "databases": {"dvc-db-01": [engine]},
        "vcenters": [{"url": "https://127.0.0.1:1/sdk"}]})
    hv.vms = {("u", "vm-1"): VMState("dvc-db-01", True, "127.10.3.10", None, False),
              ("u", "vm-2"): VMState("dvc-web-01", True, "127.10.2.10", None, False),
              ("u", "vm-3"): VMState("dvc-db-01", True, "127.10.1.9", None, False,
                                     "hopnhat-lab-guest: dvc-db-01.dc-danang")}
    hv.reconcile()
    assert started == {"dvc-db-01": [engine], "dvc-web-01": None, "dvc-db-01.dc-danang": None}


def test_lab_up_hands_the_hypervisor_the_estates_engines(estate_copy: EstateCopy,
                                                          tmp_path: Path) -> None:
    estate_copy.edit("lab.yml", lambda data: data["data"].__setitem__("db_rows", 77))
    paths = Paths(tmp_path / "state", estate_copy.load())
    config = load_lab_config(paths.estate)
    doc = control._hypervisor_config(paths, config, lab_vcenters(paths.estate), "k", "o",
                                     legacy_vms(paths.estate, config))
    assert {vm: [(e["engine"], e["rows"]) for e in entries]
            for vm, entries in doc["databases"].items()} == {
        "dvc-db-01": [("postgresql", 77)], "lgsp-esb-01": [("mariadb", 77)]}
    assert "databases" in control.RESTART_ON


@pytest.mark.parametrize("engine", ENGINES)
def test_the_data_set_made_in_chunks_is_the_same_rows(engine: str) -> None:
    whole = initial(engine, "seed", 50, NOW)
    chunks = list(databases.initial_chunks(engine, "seed", 50, NOW, chunk=7))
    assert len(chunks) == 8
    assert [[row for tables in chunks for row in tables[i].rows] for i in range(3)] == [
        t.rows for t in whole]
    if engine == "postgresql":
        script = "".join(databases.copy_script_parts(chunks))
        assert script.count('COPY "applications"') == 8
        assert script.startswith("BEGIN;\n") and script.endswith("COMMIT;\n")


def test_an_engine_spec_names_only_plain_databases_and_clusters() -> None:
    good = {"engine": "postgresql", "database": "dvc", "cluster": "dvc", "seed": "s",
            "rows": 1}
    assert EngineSpec.from_dict(good).database == "dvc"
    for bad in ({"database": "../etc"}, {"cluster": "a b"}, {"engine": "oracle"},
                {"database": "-x"}):
        with pytest.raises(LabError):
            EngineSpec.from_dict({**good, **bad})
