"""``drill.recovery`` and SQL probes in the estate: what loads, and each mistake named by its
file and key (a copy of the example estate with one error planted)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator.estate.recovery import Drill, Probe, RecoveryStep
from tests.helpers import EXAMPLE_ESTATE, EstateCopy

DVC = "systems/dvc.yml"


def test_the_example_dvc_drill_starts_postgresql_restores_its_dump_and_probes_it() -> None:
    from orchestrator.estate import load_estate

    drill = load_estate(EXAMPLE_ESTATE).systems["dvc"].drill
    assert [(s.name, s.argv, s.restore_database) for s in drill.recovery] == [
        ("start PostgreSQL", ["pg_createcluster", "--start", "--locale", "C.UTF-8", "15", "dvc"],
         None),
        ("restore the applications database", [], "dvc")]
    assert drill.recovery[0].timeout == timedelta(minutes=5)
    assert drill.recovery[1].timeout == timedelta(hours=1)  # the default
    sql = drill.probes[0]
    assert (sql.sql, sql.newest_within, sql.command) == ("dvc", "rpo", None)
    assert drill.probes[1].argv == ["sqlite3", "/srv/dvc/app.db", "PRAGMA integrity_check"]


def test_newest_within_takes_rpo_or_a_duration() -> None:
    assert Probe(name="p", sql="dvc", newest_within="90m").newest_within == timedelta(minutes=90)
    for bad in ("soon", "0s", -5):
        with pytest.raises(ValidationError, match="write rpo"):
            Probe(name="p", sql="dvc", newest_within=bad)


@pytest.mark.parametrize(("fields", "fragment"), [
    pytest.param({"name": "x"}, "either command", id="neither"),
    pytest.param({"name": "x", "command": "true", "restore_database": "dvc"}, "either command",
                 id="both"),
    pytest.param({"name": "x", "command": "echo 'open"}, "cannot be split", id="open-quote"),
    pytest.param({"name": "x", "command": "   "}, "names no program", id="blank"),
    pytest.param({"name": "Probes", "command": "true"}, "one of the drill's own steps",
                 id="a-drill-step"),
    pytest.param({"name": " x", "command": "true"}, "blanks", id="padded"),
    pytest.param({"name": "x", "restore_database": "DVC;drop"}, "pattern", id="dump-name"),
])
def test_a_recovery_step_is_one_thing_with_a_name_of_its_own(fields: dict[str, Any],
                                                            fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        RecoveryStep(**fields)


@pytest.mark.parametrize(("fields", "fragment"), [
    pytest.param({"name": "p"}, "either command", id="neither"),
    pytest.param({"name": "p", "command": "true", "sql": "dvc"}, "either command", id="both"),
    pytest.param({"name": "p", "sql": "dvc", "expect_stdout": "ok"}, "for a command probe",
                 id="expect-with-sql"),
    pytest.param({"name": "p", "command": "true", "newest_within": "rpo"},
                 "newest_within is for a sql probe", id="within-with-command"),
])
def test_a_probe_is_a_command_or_a_sql_check(fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        Probe(**fields)


def test_two_recovery_steps_of_one_name_are_refused() -> None:
    with pytest.raises(ValidationError, match="names two steps"):
        Drill(recovery=[RecoveryStep(name="start", command="true"),
                        RecoveryStep(name="Start", command="false")])


def _drill(data: dict[str, Any], recovery: list[dict[str, Any]],
           probes: list[dict[str, Any]]) -> None:
    data["drill"] = {"recovery": recovery, "probes": probes}


def test_a_dump_backup_databases_lacks_is_named(estate_copy: EstateCopy) -> None:
    estate_copy.edit(DVC, lambda d: _drill(
        d, [{"name": "load", "restore_database": "dvcx"}],
        [{"name": "counts", "sql": "dvcy"}]))
    estate_copy.assert_only_problems(
        (DVC, "drill.recovery[0].restore_database", "no dump 'dvcx' in backup.databases "
         "(known: dvc)"),
        (DVC, "drill.probes[0].sql", "no dump 'dvcy' in backup.databases (known: dvc)"))


def test_a_sql_probe_of_a_dump_no_step_restores_is_named(estate_copy: EstateCopy) -> None:
    estate_copy.edit(DVC, lambda d: _drill(d, [], [{"name": "counts", "sql": "dvc"}]))
    estate_copy.assert_only_problems(
        (DVC, "drill.probes[0].sql", "restored by no recovery step"))


def test_newest_within_needs_a_newest_column(estate_copy: EstateCopy) -> None:
    def edit(data: dict[str, Any]) -> None:
        del data["backup"]["databases"][0]["newest"]
        _drill(data, [{"name": "load", "restore_database": "dvc"}],
               [{"name": "counts", "sql": "dvc", "newest_within": "rpo"}])
    estate_copy.edit(DVC, edit)
    estate_copy.assert_only_problems(
        (DVC, "drill.probes[0].newest_within", "names no newest column"))


def test_a_sql_probe_of_a_whole_cluster_dump_is_refused(estate_copy: EstateCopy) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["backup"]["databases"] = [{"name": "all", "engine": "postgresql",
                                        "database": "postgres", "all": True}]
        _drill(data, [{"name": "load", "restore_database": "all"}],
               [{"name": "counts", "sql": "all"}])
    estate_copy.edit(DVC, edit)
    estate_copy.assert_only_problems((DVC, "drill.probes[0].sql", "pg_dumpall"))


def test_a_system_without_backup_restores_no_dump(estate_copy: EstateCopy) -> None:
    def edit(data: dict[str, Any]) -> None:
        del data["backup"]
        _drill(data, [{"name": "load", "restore_database": "dvc"}], [])
    estate_copy.edit(DVC, edit)
    problems = estate_copy.problems()
    assert (DVC, "drill.recovery[0].restore_database",
            "dump 'dvc': the system has no backup to restore it from") in problems


def test_a_sql_probe_of_a_dump_that_counts_nothing_is_refused(estate_copy: EstateCopy) -> None:
    def edit(data: dict[str, Any]) -> None:
        database = data["backup"]["databases"][0]
        del database["tables"], database["newest"]
        _drill(data, [{"name": "load", "restore_database": "dvc"}],
               [{"name": "counts", "sql": "dvc"}])
    estate_copy.edit(DVC, edit)
    estate_copy.assert_only_problems((DVC, "drill.probes[0].sql", "counts nothing"))
