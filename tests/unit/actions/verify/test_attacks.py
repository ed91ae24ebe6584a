"""verify's checks that notice an attack on a repository, as data: snapshots dated in the
future (``future``), of a host that is not the system's (``foreign``), gone since the
previous verification without hopnhat removing them (``vanished``) — and the ledger's
records they rest on (:mod:`orchestrator.actions.snapshot_log`), retire's tagging recorded
there, the retired-system and could-not-read paths, the metrics and the 80-column table."""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from orchestrator.actions import snapshot_log
from orchestrator.actions.retire.state import Retirement, apply
from orchestrator.actions.snapshot_log import (
    Sighting,
    last_seen,
    record_removed,
    record_seen,
    removed_ids,
    removed_since,
)
from orchestrator.actions.verify.attacks import (
    judge_deletions,
    judge_foreign,
    judge_future,
    judge_vanished,
)
from orchestrator.actions.verify.checks import Check, retired_checks
from orchestrator.actions.verify.run import (
    RepositoryReport,
    Target,
    VerifyResult,
    _attack_checks,
    _error_checks,
    plan,
)
from orchestrator.adapters.restic import Snapshot
from orchestrator.ledger import Ledger
from orchestrator.reports.metrics import render_metrics
from orchestrator.verdicts import (
    CHECKS,
    ERROR,
    FAILED,
    FOREIGN,
    FUTURE,
    OK,
    SKIPPED,
    VANISHED,
)
from tests.helpers import EstateCopy

NOW = datetime(2026, 11, 21, 3, 30, tzinfo=UTC)
HOUR, MINUTE = timedelta(hours=1), timedelta(minutes=1)
SKEW = 10 * MINUTE
WHERE = "qlvb@repo-qnam-01"


def snap(ident: str, host: str, at: datetime, *tags: str) -> Snapshot:
    full = (ident * 64)[:64]
    return Snapshot(id=full, short_id=full[:8], time=at, hostname=host, username="root",
                    paths=("/srv/qlvb",), tags=tags or (f"host={host}",))


def _seen(snapshots: list[Snapshot]) -> dict[str, Sighting]:
    return {s.id[:16]: Sighting(s.hostname, s.time) for s in snapshots}


# --- future ---------------------------------------------------------------------------------


def test_a_snapshot_exactly_at_the_clock_skew_passes_one_second_beyond_fails() -> None:
    at_edge = [snap("a", "qlvb-db-01", NOW - HOUR), snap("b", "qlvb-db-01", NOW + SKEW)]
    assert judge_future(WHERE, at_edge, NOW, SKEW).status == OK
    beyond = [*at_edge, snap("c", "qlvb-db-01", NOW + SKEW + timedelta(seconds=1))]
    check = judge_future(WHERE, beyond, NOW, SKEW)
    assert check.status == FAILED and check.details["count"] == 1


def test_a_future_snapshot_is_named_by_host_short_id_and_time() -> None:
    planted = [snap("f", "qlvb-db-01", NOW + timedelta(days=400)),
               snap("e", "intruder", NOW + 2 * HOUR), snap("a", "qlvb-db-01", NOW - HOUR)]
    check = judge_future(WHERE, planted, NOW, SKEW)
    assert check.status == FAILED and check.name == FUTURE
    assert check.message.startswith(f"{WHERE}: 2 snapshot(s) dated in the future "
                                    "(beyond a clock skew of 10m0s)")
    # the nearest first, each with host, short ID, time and how far ahead
    assert "host intruder snapshot eeeeeeee at 2026-11-21 05:30:00 UTC (2h0m0s ahead)" \
        in check.message
    assert "host qlvb-db-01 snapshot ffffffff at 2027-12-26 03:30:00 UTC" in check.message
    assert check.message.index("eeeeeeee") < check.message.index("ffffffff")
    assert [s["id"] for s in check.details["snapshots"]] == ["eeeeeeee", "ffffffff"]


def test_a_clock_running_a_little_ahead_is_no_attack_and_the_setting_defaults_to_10m(
        estate_copy: EstateCopy) -> None:
    estate = estate_copy.load()
    assert estate.settings.verification.clock_skew == SKEW
    estate_copy.edit("estate.yml", lambda d: d.setdefault("verification", {}).update(
        clock_skew="1h"))
    assert estate_copy.load().settings.verification.clock_skew == HOUR
    ahead = [snap("a", "qlvb-db-01", NOW + 30 * MINUTE)]
    assert judge_future(WHERE, ahead, NOW, HOUR).status == OK
    assert judge_future(WHERE, ahead, NOW, SKEW).status == FAILED


# --- foreign --------------------------------------------------------------------------------


def test_a_snapshot_of_a_host_not_the_systems_fails_naming_hosts_and_counts() -> None:
    snapshots = [snap("a", "qlvb-db-01", NOW - HOUR), snap("b", "intruder", NOW - HOUR),
                 snap("c", "intruder", NOW - 2 * HOUR), snap("d", "email-db-01", NOW)]
    check = judge_foreign(WHERE, snapshots, ("qlvb-app-01", "qlvb-db-01"))
    assert check.status == FAILED and check.name == FOREIGN
    assert check.message == (f"{WHERE}: 3 snapshot(s) of host(s) that are not the system's: "
                             "email-db-01 (1 snapshot), intruder (2 snapshots)")
    assert check.details["hosts"] == {"email-db-01": 1, "intruder": 2}
    assert check.details["count"] == 3


def test_snapshots_of_the_systems_own_hosts_pass_and_no_known_host_is_skipped() -> None:
    ours = [snap("a", "qlvb-db-01", NOW - HOUR), snap("b", "qlvb-app-01", NOW - HOUR)]
    assert judge_foreign(WHERE, ours, ("qlvb-app-01", "qlvb-db-01")).status == OK
    assert judge_foreign(WHERE, ours, ()).status == SKIPPED


def test_a_retired_or_migrated_hosts_old_snapshots_are_not_foreign(
        tmp_path: Path, estate_copy: EstateCopy) -> None:
    """qlvbqn moved to Đà Nẵng and its source qlvbqn-db-01 was retired: the estate as it
    stands no longer has that VM, the declared one does (and the ledger's retirement)."""
    declared = estate_copy.load()
    retired = Retirement("qlvbqn", "retire-1", NOW.timestamp(), ("qlvbqn-db-01",),
                         ("qlvbqn-db-01",), {"qlvbqn-db-01": "f" * 64}, moved=True)
    standing = apply(declared, {"qlvbqn": retired})
    assert [vm.name for vm in standing.vms_of("qlvbqn")] == ["qlvbqn-db-02"]
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        target = plan(standing, ["qlvbqn"], "none", ledger, declared=declared).targets[0]
        assert target.system_hosts == ("qlvbqn-db-01", "qlvbqn-db-02")
        assert target.expected_hosts == ("qlvbqn-db-02",)  # freshness: only the host that lives
        old = [snap("a", "qlvbqn-db-01", NOW - 30 * 24 * HOUR, "final", "archived"),
               snap("b", "qlvbqn-db-02", NOW - HOUR)]
        assert judge_foreign(WHERE, old, target.system_hosts).status == OK
        # a migration's targets count before the migration too, and every role, not only data
        before = plan(declared, ["qlvbqn", "qlvb"], "none", ledger).targets
        assert before[0].system_hosts == ("qlvbqn-db-01", "qlvbqn-db-02")
        assert before[1].system_hosts == ("qlvb-app-01", "qlvb-app-02", "qlvb-db-01")
        assert before[1].protocol == declared.repository_host("repo-qnam-01").protocol


# --- vanished -------------------------------------------------------------------------------


def test_the_first_verification_is_the_baseline() -> None:
    now = [snap("a", "qlvb-db-01", NOW - HOUR)]
    check = judge_vanished(WHERE, None, "", now, frozenset(), "rest")
    assert check.status == OK and check.message.startswith("baseline: 1 snapshot(s) seen")
    assert check.details["count"] == 0


def test_a_snapshot_gone_without_hopnhat_removing_it_fails_naming_id_host_and_time() -> None:
    before = [snap("a", "qlvb-db-01", NOW - 3 * HOUR), snap("b", "qlvb-db-01", NOW - 2 * HOUR),
              snap("c", "qlvb-db-01", NOW - HOUR)]
    check = judge_vanished(WHERE, _seen(before), "verify-1", before[2:], frozenset(), "rest")
    assert check.status == FAILED and check.name == VANISHED
    assert check.message == (
        f"{WHERE}: 2 snapshot(s) seen by the previous verification (verify-1) are gone and "
        "hopnhat did not remove them: aaaaaaaa (host qlvb-db-01, 2026-11-21 00:30:00 UTC), "
        "bbbbbbbb (host qlvb-db-01, 2026-11-21 01:30:00 UTC)")
    assert check.details["count"] == 2


def test_a_snapshot_hopnhat_removed_is_not_vanished_even_by_its_short_id() -> None:
    before = [snap("a", "qlvb-db-01", NOW - 3 * HOUR), snap("b", "qlvb-db-01", NOW - 2 * HOUR)]
    removed = frozenset({"a" * 16, "bbbbbbbb"})  # whole (cut to 16) and short IDs
    check = judge_vanished(WHERE, _seen(before), "verify-1", [], removed, "rest")
    assert check.status == OK, check.message
    assert check.details["removed_by_hopnhat"] == 2
    assert "every one removed by hopnhat" in check.message
    # new snapshots since are no concern of this check
    grown = judge_vanished(WHERE, _seen(before), "verify-1",
                           [*before, snap("c", "qlvb-db-01", NOW)], frozenset(), "rest")
    assert grown.status == OK and grown.message == "none of the 2 snapshot(s) seen before is gone"


def test_an_sftp_repository_skips_vanished_saying_why() -> None:
    before = [snap("a", "qlvb-db-01", NOW - HOUR)]
    check = judge_vanished(WHERE, _seen(before), "verify-1", [], frozenset(), "sftp")
    assert check.status == SKIPPED
    assert "prune it themselves" in check.message and "rest repository host" in check.message


def test_rest_verify_keeps_what_it_saw_and_flags_a_deletion_on_the_next_run(
        tmp_path: Path) -> None:
    """The action's own path with protocol rest faked: the first run is the baseline and
    keeps the IDs in the ledger; a snapshot forgotten behind hopnhat's back fails the next;
    one removed by the maintenance pass (recorded) does not."""
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        target = Target(system="qlvb", tier=1, repository="repo-qnam-01", copy=None, rpo=HOUR,
                        rotation=7, expected_hosts=("qlvb-db-01",), expected_paths=("/srv/qlvb",),
                        subset=None, position=None, system_hosts=("qlvb-db-01",), protocol="rest")
        snapshots = [snap(c, "qlvb-db-01", NOW - i * HOUR) for i, c in enumerate("abcd")]
        first = _attack_checks(target, WHERE, snapshots, ledger, NOW, SKEW, "verify-1")
        assert [c.status for c in first] == [OK, OK, OK]
        assert first[2].details["baseline"] is True
        seen = last_seen(ledger, "qlvb", "repo-qnam-01")
        assert seen is not None and seen.run_id == "verify-1"
        assert set(seen.snapshots) == {c * 16 for c in "abcd"}
        assert seen.snapshots["b" * 16] == Sighting("qlvb-db-01", NOW - HOUR)

        record_removed(ledger, "qlvb", "repo-qnam-01", ["d" * 64], "maintain: retention", "m-1")
        second = _attack_checks(target, WHERE, snapshots[:2], ledger, NOW, SKEW, "verify-2")
        vanished = second[2]
        assert vanished.status == FAILED
        assert "1 snapshot(s) seen by the previous verification (verify-1)" in vanished.message
        assert "cccccccc (host qlvb-db-01, 2026-11-21 01:30:00 UTC)" in vanished.message
        assert "dddddddd" not in vanished.message  # the maintenance pass removed it
        # the next run compares with what this one saw: the deletion was reported once
        third = _attack_checks(target, WHERE, snapshots[:2], ledger, NOW, SKEW, "verify-3")
        assert third[2].status == OK


def test_retires_tagging_records_the_ids_it_replaces_so_they_are_not_vanished(
        tmp_path: Path, estate_copy: EstateCopy) -> None:
    """``restic tag`` writes each snapshot again under a new ID and deletes the old one:
    retire records the old IDs before tagging, and vanished excuses them."""
    from orchestrator.actions.migrate.run import NoProgress
    from orchestrator.actions.retire import run as retire_run
    from orchestrator.actions.retire.plan import plan_retire
    from orchestrator.actions.retire.result import RetireResult
    from orchestrator.settings import Paths

    estate = estate_copy.load()
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        the_plan = plan_retire(estate, ledger, "qlvb", now=NOW.timestamp())
        (host,) = the_plan.hosts
        history = [snap(c, host, NOW - (i + 2) * HOUR) for i, c in enumerate("abc")]
        final = snap("f", host, NOW - HOUR)

        class Tagging:
            """restic as far as tag goes: a new ID per snapshot rewritten, ``original`` kept."""

            def __init__(self, snapshots: list[Snapshot]) -> None:
                self.all = list(snapshots)

            def snapshots(self) -> list[Snapshot]:
                return list(self.all)

            def tag(self, ids: list[str], add: list[str]) -> None:
                for i, old in enumerate(self.all):
                    if old.id in ids:
                        new = hashlib.sha256((old.id + ",".join(add)).encode()).hexdigest()
                        self.all[i] = replace(old, id=new, short_id=new[:8],
                                              tags=tuple(dict.fromkeys((*old.tags, *add))),
                                              original=old.original or old.id)

        restic = Tagging([*history, final])
        previous = _seen(restic.snapshots())
        result = RetireResult("retire-1", the_plan, "tester", time.time())
        work = retire_run._Retirement(Paths(tmp_path / "state", estate), result, ledger,
                                      NoProgress(), time.monotonic())
        retire_run._tag(work, restic, {host: final.id})  # type: ignore[arg-type]
        after = restic.snapshots()
        assert not {s.id for s in after} & {s.id for s in (*history, final)}  # all rewritten
        assert result.finals == {host: next(s.id for s in after if "final" in s.tags)}
        removed = removed_ids(ledger, "qlvb", "repo-qnam-01")
        assert removed == {s.id[:16] for s in (*history, final)}
        why = {r.why for r in removed_since(ledger, "qlvb", "repo-qnam-01").values()}
        assert why == {"retire: tagged archived (restic tag writes a new ID)",
                       "retire: tagged final, archived (restic tag writes a new ID)"}
        check = judge_vanished(WHERE, previous, "verify-1", after, removed, "rest")
        assert check.status == OK and check.details["removed_by_hopnhat"] == 4
        # without the records, the same tagging would look like four snapshots deleted
        assert judge_vanished(WHERE, previous, "verify-1", after, frozenset(),
                              "rest").details["count"] == 4


def test_removals_need_a_real_prefix_and_are_found_by_time(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        with pytest.raises(ValueError, match="at least 8 hex digits"):
            record_removed(ledger, "qlvb", "repo-qnam-01", ["abc"], "maintain", "m-1")
        before = time.time()
        record_removed(ledger, "qlvb", "repo-qnam-01", ["A" * 64, "b" * 8], "maintain", "m-1")
        found = removed_since(ledger, "qlvb", "repo-qnam-01", before - 1)
        assert set(found) == {"a" * 16, "b" * 8}
        assert found["a" * 16].run_id == "m-1" and found["a" * 16].why == "maintain"
        assert removed_since(ledger, "qlvb", "repo-qnam-01", time.time() + 60) == {}
        assert removed_ids(ledger, "email", "repo-qnam-01") == frozenset()  # per repository


def test_what_verify_saw_is_kept_compactly(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        snapshots = [snap(hashlib.sha256(str(i).encode()).hexdigest(), f"qlvb-db-0{i % 2 + 1}",
                          NOW - i * HOUR) for i in range(300)]
        record_seen(ledger, "qlvb", "repo-qnam-01", snapshots, "verify-1", at=NOW.timestamp())
        value = ledger.fact(snapshot_log.SEEN, "qlvb@repo-qnam-01")
        assert value["hosts"] == ["qlvb-db-01", "qlvb-db-02"]  # each host written once
        assert len(str(value)) < 300 * 40  # 16 hex digits, a host index and a time each
        seen = last_seen(ledger, "qlvb", "repo-qnam-01")
        assert seen is not None and len(seen.snapshots) == 300 and seen.at == NOW.timestamp()
        assert last_seen(ledger, "email", "repo-qnam-01") is None


# --- every path of verify covers them -------------------------------------------------------


def test_a_repository_that_cannot_be_read_errs_every_attack_check_and_skips_sftp_vanished(
) -> None:
    target = Target(system="qlvb", tier=1, repository="repo-qnam-01", copy=None, rpo=HOUR,
                    rotation=7, expected_hosts=(), expected_paths=(), subset=None,
                    position=None, protocol="sftp")
    checks = {c.name: c.status for c in _error_checks(target, WHERE, "no repository")}
    assert list(checks) == list(CHECKS)
    assert (checks[FUTURE], checks[FOREIGN], checks[VANISHED]) == (ERROR, ERROR, SKIPPED)
    rest = {c.name: c.status for c in _error_checks(replace(target, protocol="rest"), WHERE,
                                                     "no repository")}
    assert rest[VANISHED] == ERROR


def test_a_system_retired_whole_is_still_judged_for_attacks(tmp_path: Path) -> None:
    """Freshness and anomalies are skipped for a retired system; the attack checks are not
    (its archived records are what an attacker would go for)."""
    assert all(c.status == SKIPPED for c in retired_checks("2026-11-01"))
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        target = Target(system="qlvb", tier=1, repository="repo-qnam-01", copy=None, rpo=HOUR,
                        rotation=7, expected_hosts=(), expected_paths=(), subset=None,
                        position=None, finals={"qlvb-db-01": "a" * 64}, retired_at="2026-11-01",
                        system_hosts=("qlvb-db-01",), protocol="rest")
        kept = [snap("a", "qlvb-db-01", NOW - 30 * 24 * HOUR, "final", "archived")]
        _attack_checks(target, WHERE, kept, ledger, NOW, SKEW, "verify-1")
        planted = [snap("e", "qlvb-db-01", NOW + 24 * HOUR), snap("f", "intruder", NOW - HOUR)]
        future, foreign, vanished = _attack_checks(target, WHERE, planted, ledger, NOW, SKEW,
                                                   "verify-2")
        assert (future.status, foreign.status, vanished.status) == (FAILED, FAILED, FAILED)
        assert "aaaaaaaa (host qlvb-db-01" in vanished.message


def _report(system: str, checks: tuple[Check, ...]) -> RepositoryReport:
    target = Target(system=system, tier=1, repository="repo-qnam-01", copy=None, rpo=HOUR,
                    rotation=7, expected_hosts=(f"{system}-db-01",), expected_paths=(),
                    subset="3/7", position=3)
    return RepositoryReport(target, f"{system}@repo-qnam-01", checks, (), 4, 1.0)


def _checks(**status: tuple[str, dict[str, Any]]) -> tuple[Check, ...]:
    """Every check ok (with a count of 0), but those named ``status``."""
    checks = []
    for name in CHECKS:
        state, details = status.get(name, (OK, {"count": 0}))
        checks.append(Check(name, state, f"{name} planted" if state == FAILED else "fine",
                            details))
    return tuple(checks)


def test_each_attack_check_has_its_metric_and_a_skipped_one_none() -> None:
    attacked = _report("qlvb", _checks(future=(FAILED, {"count": 2}),
                                       foreign=(FAILED, {"count": 2}),
                                       deletions=(FAILED, {"count": 3})))
    sftp = _report("email", _checks(vanished=(SKIPPED, {}), deletions=(SKIPPED, {})))
    gone = _report("dvc", tuple(Check(name, ERROR, "no repository") for name in CHECKS))
    result = VerifyResult("verify-1", "danang", "auto", NOW, 3.0, (attacked, sftp, gone))
    families = {f.name: f for f in text_string_to_metric_families(render_metrics(result))}
    base = {"tier": "1", "repository": "repo-qnam-01"}

    def values(metric: str) -> dict[str, float]:
        samples = families[metric].samples
        assert all(s.labels == {**base, "system": s.labels["system"]} for s in samples)
        return {s.labels["system"]: s.value for s in samples}

    assert values("hopnhat_backup_future_snapshots") == {"qlvb": 2.0, "email": 0.0}
    assert values("hopnhat_backup_foreign_snapshots") == {"qlvb": 2.0, "email": 0.0}
    assert values("hopnhat_backup_vanished_snapshots") == {"qlvb": 0.0}  # sftp: not known
    assert values("hopnhat_backup_server_deleted_files") == {"qlvb": 3.0}
    checks = {(s.labels["system"], s.labels["check"]): s.value
              for s in families["hopnhat_verify_check_ok"].samples}
    assert checks[("qlvb", FUTURE)] == 0.0 and ("email", VANISHED) not in checks


def _rendered(result: VerifyResult) -> str:
    """What ``hopnhat verify`` prints for ``result`` on an 80-column terminal."""
    from orchestrator.cli import verify as cli

    console = Console(width=80, record=True, force_terminal=False, highlight=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "console", console)
        cli.render(result)
    return console.export_text()


def test_the_table_fits_80_columns_and_names_the_checks_that_did_not_pass() -> None:

    attacked = _report("qlvb", _checks(future=(FAILED, {"count": 1}),
                                       foreign=(FAILED, {"count": 1})))
    fine = _report("email", _checks(vanished=(SKIPPED, {})))
    gone = _report("dvc", tuple(Check(name, ERROR, "dvc@repo-qnam-01: no repository")
                                for name in CHECKS))
    result = VerifyResult("verify-1", "danang", "auto", NOW, 3.0, (attacked, fine, gone))
    text = _rendered(result)
    table = text.split("\nfailed:")[0].splitlines()
    assert all(len(line) <= 80 for line in table), table
    assert "…" not in "\n".join(table)  # nothing cut
    assert "future, foreign" in text and "all 10 ok" in text and "none could run" in text
    assert "failed: qlvb@repo-qnam-01 future: future planted" in text
    assert "failed: qlvb@repo-qnam-01 foreign: foreign planted" in text


def test_the_quota_line_names_each_rest_systems_use_fullest_first() -> None:
    from dataclasses import replace


    full = _report("qlvb", _checks())
    full = replace(full, target=replace(full.target, protocol="rest", quota_bytes=8 * 2**20),
                   used_bytes=8 * 2**20 - 100)
    light = _report("email", _checks())
    light = replace(light, target=replace(light.target, protocol="rest",
                                          quota_bytes=100 * 2**30), used_bytes=3 * 2**30)
    unread = _report("dvc", _checks())  # its server could not say: no figure, no line entry
    unread = replace(unread, target=replace(unread.target, protocol="rest",
                                            quota_bytes=2**30))
    result = VerifyResult("verify-1", "danang", "auto", NOW, 3.0, (light, full, unread))
    assert "quota used: qlvb 100% of 8.0 MiB, email 3% of 100.0 GiB" in \
        _rendered(result).replace("\n", " ")


def test_a_system_server_that_deleted_anything_but_locks_fails() -> None:
    clean = judge_deletions("dvc@repo", "127.20.2.10:8104", {"locks": 3})
    assert (clean.status, clean.details["count"]) == (OK, 0)
    assert "no file but 3 lock(s)" in clean.message
    bad = judge_deletions("dvc@repo", "127.20.2.10:8104",
                          {"locks": 3, "snapshots": 2, "data": 0, "index": 1})
    assert (bad.status, bad.details["count"]) == (FAILED, 3)
    assert "deleted 1 index, 2 snapshots file(s)" in bad.message
    assert "append-only" in bad.message and "127.20.2.10:8104" in bad.message
