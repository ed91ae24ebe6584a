"""A host's "latest snapshot" is its latest FILES snapshot wherever hopnhat judges one: a
database dump's snapshot (tagged hopnhat-dump), made a moment before the files snapshot or on
its own, never stands in for it — in backup status, the gate, verify's freshness and anomaly
checks, and a migration's choice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.actions.backup.gate import FRESH, judge
from orchestrator.actions.backup.status import latest_by_host
from orchestrator.actions.migrate.preview import newest
from orchestrator.actions.verify.checks import host_states, judge_anomaly
from orchestrator.adapters.restic_results import DUMP_TAG, Snapshot

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
HOST = "dvc-db-01"


def _snap(ident: str, hours_ago: float, *, dump: bool = False) -> Snapshot:
    return Snapshot(id=ident * 64, short_id=ident * 8, time=NOW - timedelta(hours=hours_ago),
                    hostname=HOST, username="root",
                    paths=("/dvc.pgdump",) if dump else ("/srv/dvc", "/var/lib/hopnhat/dumps"),
                    tags=("system=dvc", *((DUMP_TAG, "dump=dvc") if dump else ())))


# files every night, a dump before each, and the newest thing in the repository a dump only
# (e.g. tonight's run whose files backup has not been made)
SNAPSHOTS = [_snap("a", 72.1, dump=True), _snap("b", 72), _snap("c", 48.1, dump=True),
             _snap("d", 48), _snap("e", 24.1, dump=True), _snap("f", 24),
             _snap("9", 0.5, dump=True)]
SIZES = {"a" * 64: (5, 1), "b" * 64: (1000, 50), "c" * 64: (5, 1), "d" * 64: (1010, 50),
         "e" * 64: (5, 1), "f" * 64: (990, 50), "9" * 64: (5, 1)}


def test_backup_status_and_the_gate_see_the_latest_files_snapshot() -> None:
    assert latest_by_host(SNAPSHOTS)[HOST].id == "f" * 64
    check = judge("dvc", HOST, "dvc@repo", timedelta(hours=25), SNAPSHOTS, NOW)
    assert (check.verdict, check.snapshot_id) == (FRESH, "f" * 8)
    stale = judge("dvc", HOST, "dvc@repo", timedelta(hours=12), SNAPSHOTS, NOW)
    assert stale.verdict != FRESH  # the fresh dump does not make the host fresh


def test_verify_judges_files_snapshots_and_raises_no_false_shrink() -> None:
    [state] = host_states(SNAPSHOTS, [HOST], NOW, SIZES)
    assert state.latest_id == "f" * 64 and state.snapshots == 3
    check = judge_anomaly("dvc@repo", SNAPSHOTS, [HOST], ["/srv/dvc"], SIZES, min_history=2)
    assert check.status == "ok", check.message


def test_a_migration_moves_the_latest_files_snapshot() -> None:
    assert newest(SNAPSHOTS)[HOST].id == "f" * 64


def test_backup_run_shows_each_hosts_dumps_from_their_manifests() -> None:
    from orchestrator.actions.backup.run import BackupClient, BackupRun, result_from
    from orchestrator.cli import backup as cli_backup
    from orchestrator.cli.common import console

    manifest = {"format": 1, "name": "dvc", "engine": "postgresql", "database": "dvc",
                "snapshot": "9f8e7d6c" + "0" * 56, "file": "/dvc.pgdump", "bytes": 3_692_115,
                "duration_seconds": 2.39, "tables": {"applications": 20000}}
    client = BackupClient(host=HOST, system="dvc", tier=1, address="127.0.0.1")
    host = result_from(client, {"result": "ok", "snapshot_id": "1a2b3c4d",
                                "dumps": [manifest, "not a manifest"]}, "job", 0)
    assert host.dumps == (manifest,) and host.as_dict()["dumps"] == [manifest]
    with console.capture() as captured:
        cli_backup.render_run(BackupRun("backup-1", (host,), 6.0))
    assert f"dump dvc (postgresql dvc) on {HOST}: snapshot 9f8e7d6c, 3.5 MiB in 2.4" in (
        " ".join(captured.get().split()))
