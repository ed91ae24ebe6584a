"""The Prometheus textfile of a maintenance pass: per repository when it last succeeded (this
pass, or carried from the ledger), what a real pass removed, and the pass's exit code."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from orchestrator.actions.maintain.plan import Target
from orchestrator.actions.maintain.run import MaintainResult, Outcome
from orchestrator.reports.maintain_metrics import render_maintain_metrics
from orchestrator.verdicts import FAILED, OK, SKIPPED

HOST = "repo-qnam-01"
STARTED = 1_790_000_000.25
BEFORE = 1_789_000_000.0
LAST_SUCCESS = "hopnhat_maintain_last_success_timestamp_seconds"
REMOVED = "hopnhat_maintain_removed_snapshots"
POLICY = {"within-daily": "14d"}

Series = dict[str, dict[tuple[tuple[str, str], ...], float]]


def outcome(system: str, status: str, removed: int = 0) -> Outcome:
    skipped = "an SFTP repository host" if status == SKIPPED else None
    target = Target(system, HOST, "sftp" if skipped else "rest",
                    {} if skipped else POLICY, skipped)
    return Outcome(target, status, [f"{i:064x}" for i in range(removed)])


def series(text: str) -> Series:
    """metric name → label set (sorted pairs) → value."""
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def key(system: str) -> tuple[tuple[str, str], ...]:
    return (("repository", HOST), ("system", system))


def render(outcomes: list[Outcome], *, dry_run: bool = False,
           last_success: dict[tuple[str, str], float] | None = None) -> Series:
    result = MaintainResult("maintain-1", STARTED, outcomes, 12.5, dry_run=dry_run)
    return series(render_maintain_metrics("danang", result, last_success or {}))


def test_an_ok_repository_succeeded_at_this_passs_start_and_says_what_it_removed() -> None:
    found = render([outcome("dvc", OK, removed=3)], last_success={("dvc", HOST): BEFORE})
    assert found[LAST_SUCCESS] == {key("dvc"): STARTED}
    assert found[REMOVED] == {key("dvc"): 3.0}


def test_a_failed_repository_carries_its_last_success_from_the_ledger() -> None:
    found = render([outcome("dvc", FAILED), outcome("sso", FAILED)],
                   last_success={("dvc", HOST): BEFORE})
    assert found[LAST_SUCCESS] == {key("dvc"): BEFORE}  # sso never succeeded: no series
    assert REMOVED not in found


def test_a_skipped_repository_is_left_out() -> None:
    found = render([outcome("email", SKIPPED), outcome("dvc", OK)],
                   last_success={("email", HOST): BEFORE})
    assert found[LAST_SUCCESS] == {key("dvc"): STARTED}
    assert found[REMOVED] == {key("dvc"): 0.0}


def test_a_dry_run_removes_nothing_and_makes_no_new_success() -> None:
    found = render([outcome("dvc", OK, removed=2), outcome("sso", OK, removed=1)],
                   dry_run=True, last_success={("dvc", HOST): BEFORE})
    assert found[LAST_SUCCESS] == {key("dvc"): BEFORE}
    assert REMOVED not in found


def test_the_pass_says_when_it_ran_and_how_it_exited() -> None:
    run = (("estate", "danang"),)
    ok = render([outcome("dvc", OK)])
    assert ok["hopnhat_maintain_last_run_timestamp_seconds"] == {run: STARTED}
    assert ok["hopnhat_maintain_exit_code"] == {run: 0.0}
    failed = render([outcome("dvc", OK), outcome("sso", FAILED)])
    assert failed["hopnhat_maintain_exit_code"] == {run: 1.0}
    nothing = render([])
    assert set(nothing) == {"hopnhat_maintain_last_run_timestamp_seconds",
                            "hopnhat_maintain_exit_code"}


def test_every_series_written_has_its_help_and_type() -> None:
    text = render_maintain_metrics("danang", MaintainResult(
        "maintain-1", STARTED, [outcome("dvc", OK, removed=1)]), {})
    for name in (LAST_SUCCESS, REMOVED, "hopnhat_maintain_exit_code"):
        assert f"# HELP {name} " in text and f"# TYPE {name} gauge" in text
    assert text.endswith("\n") and f"{LAST_SUCCESS}{{" in text
    assert str(STARTED) in text  # the start's fraction of a second is kept
