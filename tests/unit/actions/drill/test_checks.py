"""A drill's checks as data: tallying a snapshot's listing, comparing, judging probes."""

from __future__ import annotations

from orchestrator.actions.drill.checks import (
    Counts,
    ProbeResult,
    SnapshotSide,
    compare,
    tally,
    under,
)
from orchestrator.adapters.restic_results import Node


def nodes() -> list[Node]:
    out = [Node("/srv", "srv", "dir"), Node("/srv/qlvb", "qlvb", "dir"),
           Node("/srv/qlvb/app.db", "app.db", "file", size=100),
           Node("/srv/qlvb/link", "link", "symlink"), Node("/srv/qlvbx", "qlvbx", "dir")]
    out += [Node(f"/srv/qlvb/d/f{i}", f"f{i}", "file", size=i) for i in range(50)]
    return out


def test_only_nodes_under_the_backup_paths_count() -> None:
    assert under("/srv/qlvb/a", ["/srv/qlvb"]) and under("/srv/qlvb", ["/srv/qlvb/"])
    assert not under("/srv/qlvbx", ["/srv/qlvb"]) and not under("/srv", ["/srv/qlvb"])
    counts, samples = tally(nodes(), ["/srv/qlvb"], 5, "seed")
    assert counts == Counts(files=51, dirs=1, others=1, total_size=100 + sum(range(50)))
    assert len(samples) == 5 and all(p.startswith("/srv/qlvb/") for p in samples)


def test_the_sample_is_reproducible_from_its_seed() -> None:
    first = tally(nodes(), ["/srv/qlvb"], 5, "drill-a")[1]
    assert tally(nodes(), ["/srv/qlvb"], 5, "drill-a")[1] == first
    assert tally(nodes(), ["/srv/qlvb"], 5, "drill-b")[1] != first


def test_differences_are_named() -> None:
    side = SnapshotSide(Counts(3, 1, 0, 30), {"/srv/a": 10, "/srv/b": 20},
                        {"/srv/a": "aa", "/srv/b": "bb"})
    good = compare("vm", side, Counts(3, 1, 0, 30), [], {"/srv/a": "aa", "/srv/b": "bb"})
    assert good.ok and good.problems() == []
    bad = compare("vm", side, Counts(2, 1, 0, 20), ["/srv"], {"/srv/a": "aa", "/srv/b": "xx"})
    assert not bad.ok
    assert bad.problems() == ["vm: files: snapshot 3, restored 2",
                              "vm: total size: snapshot 30, restored 20",
                              "vm: /srv missing after the restore",
                              "vm: /srv/b: content differs from the snapshot"]


def test_a_probe_passes_on_its_exit_code_and_its_output() -> None:
    def probe(rc: int, out: str, want: str | None) -> ProbeResult:
        return ProbeResult("vm", "db", "sqlite3 …", 0, want, rc, out, "", 0.1)
    assert probe(0, "ok\n", "ok").ok and probe(0, "anything", None).ok
    assert not probe(1, "ok", "ok").ok
    wrong = probe(0, "*** in database main ***", "ok")
    assert not wrong.ok
    assert wrong.describe() == ("vm: probe 'db' gave exit 0 and '*** in database main ***', "
                                "expected exit 0 and 'ok'")
