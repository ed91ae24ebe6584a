"""``hopnhat drill nightly`` with a fake clock: who is drilled tonight (tier 1 every night,
the others in their turn spread over the nights, the overdue first), the scratch-VM limit,
the window's end (the running drill stopped, the rest not run), the night's textfile and
JUnit, and the drill timer of ``schedule install``."""

from __future__ import annotations

import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.actions import schedule
from orchestrator.actions.drill import nightly as drill_nightly
from orchestrator.actions.drill.night import (
    NOT_RUN,
    STOPPED,
    Outcome,
    ThreadLauncher,
    run_night,
)
from orchestrator.actions.drill.nightly import nightly
from orchestrator.actions.drill.result import (
    Cancel,
    DrillAborted,
    DrillProgress,
    DrillResult,
    StepRecord,
)
from orchestrator.actions.drill.tonight import (
    EVERY_NIGHT,
    NEVER,
    OVERDUE,
    TURN,
    NightPlan,
    Standing,
    Turn,
    period_nights,
    plan_night,
    standings_from,
    window_at,
)
from orchestrator.estate import load_estate
from orchestrator.estate.model import Estate
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from tests.helpers import EXAMPLE_ESTATE, promtool_says, replace_in

ESTATE = load_estate(EXAMPLE_ESTATE)
DAY = 86400.0
#: 2026-12-07 01:30 in Hồ Chí Minh City (UTC+7): inside the example's window (01:00, 4h)
NIGHT = datetime(2026, 12, 6, 18, 30, tzinfo=UTC).timestamp()


def estate_with(**nightly_drills: Any) -> Estate:
    settings = ESTATE.settings.model_copy(update={"nightly_drills": ESTATE.settings.
                                                  nightly_drills.model_copy(
                                                      update=nightly_drills)})
    return ESTATE.model_copy(update={"settings": settings})


def drilled(estate: Estate, ago: float, now: float = NIGHT) -> list[Standing]:
    """Every drillable system, its last passed drill ``ago`` seconds before ``now``."""
    return [replace(s, last_passed=now - ago, last_seconds=600.0)
            for s in standings_from(estate, [])]


def test_a_drills_expected_length_is_its_last_passed_one_not_a_failure_at_its_plan() -> None:
    runs = [{"system": "dvc", "status": "passed", "started": NIGHT - 2 * DAY, "seconds": 65.0},
            {"system": "dvc", "status": "failed", "started": NIGHT - DAY, "seconds": 0.7},
            {"system": "sso", "status": "failed", "started": NIGHT - DAY, "seconds": 30.0},
            {"system": "qlvb", "status": "aborted", "started": NIGHT - DAY, "seconds": 5.0}]
    lengths = {s.system: s.last_seconds for s in standings_from(ESTATE, runs)}
    assert lengths["dvc"] == 65.0  # the refused --snapshot's 0.7 s would have said "0.7 s"
    assert lengths["sso"] == 30.0  # never passed: its last failed drill's
    assert lengths["qlvb"] is None  # an aborted drill says nothing of a whole drill's length


# --- whose turn tonight -------------------------------------------------------------


def test_the_window_is_the_estates_time_of_day_in_its_time_zone() -> None:
    window = window_at(ESTATE, NIGHT)
    assert window.night == date(2026, 12, 7)
    assert window.local(window.start) == "2026-12-07T01:00:00+07:00"
    assert window.end - window.start == 4 * 3600
    # after it closes, the plan is the next night's, and it is not open
    later = window_at(ESTATE, window.end + 1)
    assert later.night == date(2026, 12, 8) and later.start == window.start + DAY
    plan = plan_night(ESTATE, drilled(ESTATE, DAY), window.end + 1)
    assert not plan.is_open
    assert plan_night(ESTATE, drilled(ESTATE, DAY), NIGHT).is_open


def test_tier_1_every_night_and_the_others_once_in_their_turn_spread_over_nights() -> None:
    """Over one whole turn of the tier-2 systems (drill_interval 90d: every 89 nights), with
    every system drilled the night its turn came: tier 1 each night, each tier-2 system
    exactly once, not all of them the same night; none is ever overdue."""
    tier1 = {c for c, s in ESTATE.systems.items() if s.tier == 1 and not _undrillable(c)}
    tier2 = {c for c, s in ESTATE.systems.items() if s.tier == 2 and not _undrillable(c)}
    assert period_nights(90 * DAY) == 89
    last = {s.system: NIGHT - DAY for s in standings_from(ESTATE, [])}
    nights: dict[str, list[int]] = {code: [] for code in tier2}
    for n in range(89):
        now = NIGHT + n * DAY
        standings = [replace(s, last_passed=last[s.system])
                     for s in standings_from(ESTATE, [])]
        plan = plan_night(ESTATE, standings, now)
        tonight = {t.system: t for t in plan.turns}
        assert tier1 <= set(tonight) and all(tonight[c].why == EVERY_NIGHT for c in tier1)
        assert not any(t.overdue for t in plan.turns), (n, plan.turns)
        for code in tonight:
            last[code] = now
            if code in tier2:
                assert tonight[code].why == TURN
                nights[code].append(n)
    assert all(len(n) == 1 for n in nights.values()), nights
    assert len({n[0] for n in nights.values()}) > 1, nights  # spread, not one night


def _undrillable(code: str) -> bool:
    from orchestrator.actions.drill.plan import drillable

    return bool(drillable(ESTATE, code))


def test_the_overdue_go_first_the_never_drilled_before_the_longest_waiting() -> None:
    standings = drilled(ESTATE, DAY)
    by = {s.system: s for s in standings}
    by["ioc"] = replace(by["ioc"], last_passed=None)  # tier 3, never drilled
    by["lgsp"] = replace(by["lgsp"], last_passed=NIGHT - 200 * DAY)  # tier 2, overdue
    by["email"] = replace(by["email"], last_passed=NIGHT - 100 * DAY)  # tier 2, overdue
    plan = plan_night(ESTATE, list(by.values()), NIGHT)
    assert [(t.system, t.why) for t in plan.turns[:3]] == [
        ("ioc", NEVER), ("lgsp", OVERDUE), ("email", OVERDUE)]
    assert all(t.tier == 1 or t.why == TURN for t in plan.turns[3:])
    assert plan.turns[3].tier == 1
    later = {x.system for x in plan.later}
    assert "opendata" in later and "ioc" not in later


def test_every_night_names_the_tiers_drilled_every_night() -> None:
    estate = estate_with(every_night=[1, 2])
    plan = plan_night(estate, drilled(estate, DAY), NIGHT)
    assert {t.tier for t in plan.turns} >= {1, 2}
    assert all(x.tier == 3 for x in plan.later)
    nobody = estate_with(every_night=[])
    assert not any(t.why == EVERY_NIGHT
                   for t in plan_night(nobody, drilled(nobody, DAY), NIGHT).turns)


# --- running the night with a fake clock --------------------------------------------


@dataclass
class FakeNight:
    """Drills that take ``lengths[system]`` seconds of a fake clock (``fail`` ones fail); a
    stopped one tears down in ``teardown`` seconds. Records the scratch VMs in use at every
    start."""

    lengths: dict[str, float]
    t: float = NIGHT
    teardown: float = 30.0
    fail: set[str] = field(default_factory=set)
    running: dict[str, tuple[float, Turn, str]] = field(default_factory=dict)
    in_use: list[int] = field(default_factory=list)
    started: list[tuple[str, float]] = field(default_factory=list)

    def now(self) -> float:
        return self.t

    def start(self, turn: Turn) -> None:
        self.running[turn.system] = (self.t + self.lengths[turn.system], turn, "")
        self.started.append((turn.system, self.t))
        self.in_use.append(sum(t.scratch_vms for _, t, _ in self.running.values()))

    def wait(self, timeout: float) -> list[Outcome]:
        if not self.running:
            return []
        self.t = min(min(end for end, _, _ in self.running.values()), self.t + timeout)
        ended = []
        for code, (end, turn, stopped) in list(self.running.items()):
            if end <= self.t:
                del self.running[code]
                status = STOPPED if stopped else ("failed" if code in self.fail else "passed")
                ended.append(Outcome(code, turn.tier, status, stopped, f"drill-{code}",
                                     end - self.lengths[code], 0.0, 60.0, 100.0))
        return ended

    def stop(self, reason: str) -> None:
        for code, (_, turn, _) in list(self.running.items()):
            self.running[code] = (self.t + self.teardown, turn, reason)


def night_plan(turns: list[Turn], *, limit: int = 2, length: float = 4 * 3600) -> NightPlan:
    window = replace(window_at(ESTATE, NIGHT), start=NIGHT - 60, end=NIGHT - 60 + length)
    return NightPlan(ESTATE.id, window, True, limit, tuple(turns), ())


def turn(code: str, vms: int = 1, expected: float | None = None) -> Turn:
    return Turn(code, 1, EVERY_NIGHT, False, vms, expected)


def test_the_scratch_vm_limit_is_never_exceeded_and_the_order_is_kept() -> None:
    turns = [turn("a", 2), turn("b", 1), turn("c", 1), turn("d", 3), turn("e", 1)]
    fake = FakeNight({"a": 600, "b": 100, "c": 900, "d": 300, "e": 50})
    ran = run_night(night_plan(turns, limit=3), fake, fake.now, slice_seconds=60)
    assert [o.status for o in ran.outcomes] == ["passed"] * 5
    assert fake.in_use == [2, 3, 3, 3, 1]  # at every start, at most the limit
    assert [code for code, _ in fake.started] == ["a", "b", "c", "d", "e"]
    # a and b at once; c when b ends; d (3 VMs) once a and c have ended; e waits its turn
    starts = dict(fake.started)
    assert starts["a"] == starts["b"] == NIGHT and starts["c"] == NIGHT + 100
    assert starts["d"] == NIGHT + 1000 and starts["e"] == NIGHT + 1300


def test_a_system_needing_more_scratch_vms_than_the_limit_is_not_run_and_says_why() -> None:
    fake = FakeNight({"a": 10, "big": 10})
    ran = run_night(night_plan([turn("big", 5), turn("a")], limit=2), fake, fake.now,
                    slice_seconds=60)
    assert [(o.system, o.status) for o in ran.outcomes] == [("big", NOT_RUN), ("a", "passed")]
    assert "needs 5 scratch VMs, more than nightly_drills.max_scratch_vms (2)" in \
        ran.outcomes[0].reason


def test_a_drill_overrunning_the_window_is_stopped_and_the_rest_are_not_run() -> None:
    """Window of 1 h: a (20 min) passes; b would take 2 h: stopped at the window's end, torn
    down; c and d never start."""
    turns = [turn("a"), turn("b"), turn("c"), turn("d")]
    fake = FakeNight({"a": 1200, "b": 7200, "c": 60, "d": 60})
    plan = night_plan(turns, limit=1, length=3600)
    ran = run_night(plan, fake, fake.now, slice_seconds=60)
    status = {o.system: (o.status, o.reason) for o in ran.outcomes}
    assert status["a"][0] == "passed"
    assert status["b"] == (STOPPED, "window closed")
    assert status["c"] == status["d"] == (NOT_RUN, "window closed")
    assert fake.t == plan.window.end + fake.teardown  # stopped at the end, then torn down
    assert [code for code, _ in fake.started] == ["a", "b"]


def test_a_drill_expected_to_end_after_the_window_is_not_started() -> None:
    turns = [turn("a"), turn("b", expected=3000), turn("c", expected=10)]
    fake = FakeNight({"a": 1200, "b": 3000, "c": 10})
    ran = run_night(night_plan(turns, limit=1, length=3600), fake, fake.now, slice_seconds=60)
    assert [(o.system, o.status) for o in ran.outcomes] == [
        ("a", "passed"), ("b", NOT_RUN), ("c", NOT_RUN)]  # once one cannot, none after it
    assert [code for code, _ in fake.started] == ["a"]


def test_outside_the_window_nothing_starts() -> None:
    fake = FakeNight({"a": 10})
    plan = replace(night_plan([turn("a")]), is_open=False)
    ran = run_night(plan, fake, fake.now)
    assert ran.outcomes[0].status == NOT_RUN and "window closed (it opens" in \
        ran.outcomes[0].reason
    assert fake.started == []


def test_ctrl_c_stops_the_running_drills_and_the_night_ends_interrupted() -> None:
    class Interrupted(FakeNight):
        def wait(self, timeout: float) -> list[Outcome]:
            if not any(stopped for _, _, stopped in self.running.values()):
                raise KeyboardInterrupt
            return super().wait(timeout)

    fake = Interrupted({"a": 600, "b": 600, "c": 10})
    ran = run_night(night_plan([turn("a"), turn("b"), turn("c")]), fake, fake.now,
                    slice_seconds=60)
    assert ran.interrupted
    assert [(o.status, o.reason) for o in ran.outcomes] == [
        (STOPPED, "stopped by the operator"), (STOPPED, "stopped by the operator"),
        (NOT_RUN, "stopped by the operator")]


# --- drills in threads ---------------------------------------------------------------


def test_threads_report_a_stopped_drill_with_its_id() -> None:
    def drill(code: str, cancel: Cancel, heard: DrillProgress) -> DrillResult:
        heard.step_started(f"drill-{code}", "plan")
        heard.step_finished(f"drill-{code}", StepRecord("plan", 0, 0, True))
        if code == "slow":
            cancel.event.wait(30)
            raise DrillAborted("stopped")
        return DrillResult(f"drill-{code}", ESTATE.id, code, "op", 1.0, 2.0, verdict="passed")

    launcher = ThreadLauncher(drill, 2)
    try:
        launcher.start(turn("fast"))
        launcher.start(turn("slow"))
        ended: list[Outcome] = []
        while not ended:
            ended += launcher.wait(5)
        assert [(o.system, o.status, o.drill_id) for o in ended] == [
            ("fast", "passed", "drill-fast")]
        launcher.stop("window closed")
        stopped = launcher.wait(5)
    finally:
        launcher.close()
    assert [(o.system, o.status, o.drill_id) for o in stopped] == [
        ("slow", STOPPED, "drill-slow")]
    assert stopped[0].reason.startswith("window closed: stopped")


def test_a_drill_that_fails_because_it_was_stopped_counts_as_stopped_not_failed() -> None:
    """A drill cut mid-step may end ``failed`` (its SSH sessions closed under it): once the
    night stopped it, that is no verdict on the backup; a failure before the stop stays one."""
    def drill(code: str, cancel: Cancel, heard: DrillProgress) -> DrillResult:
        del heard
        if code == "cut":
            cancel.event.wait(30)
        return DrillResult(f"drill-{code}", ESTATE.id, code, "op", time.time(), time.time(),
                           verdict="failed", reasons=[f"restore: {code}"])

    launcher = ThreadLauncher(drill, 2)
    try:
        launcher.start(turn("early"))
        ended: list[Outcome] = []
        while not ended:
            ended += launcher.wait(5)
        launcher.start(turn("cut"))
        launcher.stop("window closed")
        while len(ended) < 2:
            ended += launcher.wait(5)
    finally:
        launcher.close()
    assert [(o.system, o.status) for o in ended] == [("early", "failed"), ("cut", STOPPED)]
    assert ended[1].reason == ("window closed: stopped, its scratch VMs torn down (the drill "
                               "ended failed: restore: cut)")
    assert ended[1].drill_id == "drill-cut"


# --- the night's flow: ledger, textfile, JUnit ---------------------------------------


class LedgerNight(FakeNight):
    """FakeNight whose drills land in the ledger as run_drill's do."""

    def __init__(self, ledger: Ledger, lengths: dict[str, float], **kw: Any) -> None:
        super().__init__(lengths, **kw)
        self.ledger = ledger

    def wait(self, timeout: float) -> list[Outcome]:
        ended = super().wait(timeout)
        for o in ended:
            drill_id = self.ledger.start("drill", ESTATE.id, {"system": o.system})
            verdict = {"passed": "passed", "failed": "failed"}.get(o.status, "aborted")
            self.ledger.finish(drill_id, verdict, {
                "seconds": 600.0, "rpo_seconds": 60.0 if verdict != "aborted" else None,
                "rto_seconds": 100.0 if verdict == "passed" else None})
        return ended


@dataclass
class Heard:
    failed: list[str] = field(default_factory=list)
    overdue: list[str] = field(default_factory=list)
    finished: int = 0

    def drill_failed(self, outcome: Outcome) -> None:
        self.failed.append(outcome.system)

    def overdue_rows(self, rows: Any) -> None:
        self.overdue += [r.system for r in rows if r.overdue]


class Hooks:
    def __init__(self, heard: Heard) -> None:
        self.heard = heard

    def drill_failed(self, outcome: Outcome) -> None:
        self.heard.drill_failed(outcome)

    def overdue(self, rows: Any) -> None:
        self.heard.overdue_rows(rows)

    def finished(self, result: Any) -> None:
        del result
        self.heard.finished += 1


@pytest.fixture
def a_night(tmp_path: Path) -> tuple[drill_nightly.NightlyResult, Heard, Path]:
    """The example estate's first night (every system never drilled), a window of 1 h,
    drills of 20 min, one at a time: the first passes, the second fails, the third is
    stopped at the window's end, the rest are not run."""
    estate = estate_with(length=timedelta(hours=1), max_scratch_vms=1)
    paths = Paths(tmp_path / "state", estate)
    paths.state.mkdir()
    heard = Heard()
    order = [t.system for t in plan_night(estate, standings_from(estate, []), NIGHT).turns]
    lengths = dict.fromkeys(order, 1200.0)
    with Ledger(paths.ledger) as ledger:
        fake = LedgerNight(ledger, lengths, t=NIGHT - 30 * 60 + 1, fail={order[1]})
        result = nightly(paths, ledger=ledger, now=fake.now, launcher=fake,
                         hooks=Hooks(heard), metrics=tmp_path / "drill.prom",
                         junit=tmp_path / "drill.xml", slice_seconds=60)
        runs = ledger.runs("nightly")
    assert [r.id for r in runs] == [result.night_id]
    assert runs[0].status == "failed" and runs[0].summary is not None
    assert runs[0].summary["exit_code"] == 1
    return result, heard, tmp_path


def test_a_night_records_its_outcomes_and_tells_the_hooks(
        a_night: tuple[drill_nightly.NightlyResult, Heard, Path]) -> None:
    result, heard, _ = a_night
    statuses = Counter(o.status for o in result.outcomes)
    assert statuses == {"passed": 1, "failed": 1, STOPPED: 1,
                        NOT_RUN: len(result.outcomes) - 3}, result.outcomes
    assert result.exit_code == 1  # a failure outranks the systems not run
    assert heard.failed == [result.outcomes[1].system] and heard.finished == 1
    # the systems not run (and the failed one) stay overdue, the passed one is not
    passed = result.outcomes[0].system
    assert passed not in heard.overdue
    assert {o.system for o in result.outcomes if o.status != "passed"} <= set(heard.overdue)


def test_the_nights_textfile_passes_promtool_and_carries_each_system(
        a_night: tuple[drill_nightly.NightlyResult, Heard, Path]) -> None:
    result, _, folder = a_night
    text = (folder / "drill.prom").read_text()
    assert promtool_says(text) == ""
    samples = _samples(text)
    passed, failed = result.outcomes[0].system, result.outcomes[1].system
    tier = str(ESTATE.systems[passed].tier)
    assert samples[("hopnhat_drill_last_exit_code", passed)] == 0.0
    assert samples[("hopnhat_drill_last_exit_code", failed)] == 1.0
    assert samples[("hopnhat_drill_achieved_rto_seconds", passed)] == 100.0
    assert samples[("hopnhat_drill_achieved_rpo_seconds", passed)] == 60.0
    assert samples[("hopnhat_drill_overdue", passed)] == 0.0
    assert samples[("hopnhat_drill_overdue", failed)] == 1.0
    assert ("hopnhat_drill_last_success_timestamp_seconds", failed) not in samples
    assert ("hopnhat_drill_achieved_rto_seconds", failed) not in samples
    assert samples[("hopnhat_drill_rpo_target_seconds", passed)] == \
        ESTATE.tier(int(tier)).rpo.total_seconds()
    assert samples[("hopnhat_drill_nightly_exit_code", "")] == 1.0
    assert samples[("hopnhat_drill_nightly_systems", "not_run")] == \
        len(result.outcomes) - 3
    # every drillable system has its overdue flag, tonight's or not
    assert {k[1] for k in samples if k[0] == "hopnhat_drill_overdue"} == \
        {s.system for s in standings_from(ESTATE, [])}
    assert f'system="{passed}",tier="{tier}"' in text


def _samples(text: str) -> dict[tuple[str, str], float]:
    """(metric, its system label or its outcome label or "") → value."""
    import re

    found: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"(\w+)\{(.*)\} (\S+)", line)
        assert match, line
        label = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
        key = label.get("system", label.get("outcome", ""))
        found[(str(match.group(1)), str(key))] = float(match.group(3))
    return found


def test_the_nights_junit_has_one_testcase_per_system_the_not_run_skipped(
        a_night: tuple[drill_nightly.NightlyResult, Heard, Path]) -> None:
    result, _, folder = a_night
    root = ET.parse(folder / "drill.xml").getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("classname") for c in cases] == [
        f"hopnhat.drill.{o.system}" for o in result.outcomes]
    kinds = [next((child.tag for child in c if child.tag in ("failure", "skipped")), "passed")
             for c in cases]
    assert kinds == [{"passed": "passed", "failed": "failure"}.get(o.status, "skipped")
                     for o in result.outcomes]
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == (
        str(len(cases)), "1", str(len(cases) - 2))
    skipped = [c.find("skipped") for c in cases[3:]]
    assert all(s is not None and s.get("message") == "not run: window closed"
               for s in skipped)
    stopped = cases[2].find("skipped")
    assert stopped is not None and stopped.get("message") == "stopped: window closed"


# --- the timer -----------------------------------------------------------------------


def test_the_drill_timer_starts_drill_nightly_when_the_window_opens_in_the_estates_zone(
        tmp_path: Path) -> None:
    calendar = schedule.daily_calendar("01:00", "Asia/Ho_Chi_Minh")
    units = schedule.render_units("danang", tmp_path / "estate", tmp_path / "state",
                                  job="drill", on_calendar=calendar, metrics_dir=tmp_path,
                                  reports_dir=tmp_path / "reports",
                                  unit_dir=tmp_path / "units", program=Path(sys.executable),
                                  randomized_delay=timedelta(0),
                                  timeout=timedelta(hours=5))
    assert units.name == "hopnhat-drill-danang"
    assert f"--state {tmp_path}/state drill nightly --metrics " \
        f"{tmp_path}/hopnhat_drill_danang.prom --junit {tmp_path}/reports/drill-danang.xml" \
        in units.service
    assert "OnCalendar=*-*-* 01:00:00 Asia/Ho_Chi_Minh" in units.timer
    assert "RandomizedDelaySec=0" in units.timer
    assert "TimeoutStartSec=18000" in units.service and "TimeoutStopSec=600" in units.service
    elapse = schedule.validate(units)  # systemd-analyze verify and calendar
    assert elapse.endswith(":00:00 UTC") and " 18:00:00 " in elapse  # 01:00 at UTC+7


def test_threads_are_not_left_behind_by_a_night() -> None:
    assert not [t for t in threading.enumerate() if t.name.startswith("nightly")]


def test_every_night_naming_a_tier_the_estate_lacks_is_an_estate_error(tmp_path: Path) -> None:
    import shutil

    from orchestrator.errors import EstateError

    root = tmp_path / "inventory"
    shutil.copytree(EXAMPLE_ESTATE, root)
    estate_yml = root / "estate.yml"
    replace_in(estate_yml, '  start: "01:00"', '  start: "25:00"')
    replace_in(estate_yml, "  length: 4h", "  length: 2d")
    replace_in(estate_yml, "  every_night: [1]", "  every_night: [1, 7]")
    with pytest.raises(EstateError) as raised:
        load_estate(root)
    said = str(raised.value)
    assert "not a time of day" in said and "between 1m and 24h" in said
    (root / "estate.yml").write_text((root / "estate.yml").read_text().replace(
        '"25:00"', '"23:30"').replace("2d", "90m"))
    with pytest.raises(EstateError, match=r"nightly_drills.every_night\[1\].*no tier 7"):
        load_estate(root)


# --- the commands --------------------------------------------------------------------------


def test_drill_nightly_dry_run_prints_tonights_plan_and_drills_nothing(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from orchestrator.cli import app

    base = ["--estate", str(EXAMPLE_ESTATE), "--state", str(tmp_path / "state")]
    done = CliRunner().invoke(app, [*base, "drill", "nightly", "--dry-run", "--json"])
    assert done.exit_code == 0, done.output
    plan = json.loads(done.output)
    assert plan["dry_run"] and plan["timezone"] == "Asia/Ho_Chi_Minh"
    assert plan["window_start"].endswith("T01:00:00+07:00")
    assert plan["max_scratch_vms"] == 2
    # a ledger with no drill: every drillable system is overdue, never drilled, tier 1 first
    tonight = plan["tonight"]
    assert {t["why"] for t in tonight} == {NEVER} and plan["later"] == []
    assert [t["tier"] for t in tonight] == sorted(t["tier"] for t in tonight)
    assert {t["system"] for t in tonight} == {s.system for s in standings_from(ESTATE, [])}
    text = CliRunner().invoke(app, [*base, "drill", "nightly", "--dry-run"],
                              env={"COLUMNS": "200"})
    assert text.exit_code == 0 and "nothing drilled (--dry-run)" in text.output
    wrong = CliRunner().invoke(app, [*base, "drill", "nightly", "--dry-run", "--lang", "fr"])
    assert wrong.exit_code == 2 and "--lang 'fr'" in wrong.output  # refused, not ignored
    with Ledger(tmp_path / "state" / "ledger.sqlite") as ledger:
        assert ledger.runs() == []


def test_schedule_install_print_shows_the_drill_timer_at_the_estates_window(
        tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from orchestrator.cli import app

    done = CliRunner().invoke(app, [
        "--estate", str(EXAMPLE_ESTATE), "--state", str(tmp_path / "state"), "schedule",
        "install", "--print", "--json", "--unit-dir", str(tmp_path / "units")])
    assert done.exit_code == 0, done.output
    drill = json.loads(done.output)["drill"]
    assert drill["unit"] == "hopnhat-drill-danang"
    timer = drill["files"][str(tmp_path / "units" / "hopnhat-drill-danang.timer")]
    service = drill["files"][str(tmp_path / "units" / "hopnhat-drill-danang.service")]
    assert "OnCalendar=*-*-* 01:00:00 Asia/Ho_Chi_Minh" in timer
    assert " drill nightly --metrics " in service and "/drill-danang.xml" in service
    assert "TimeoutStartSec=18000" in service  # the 4h window + an hour to tear down
    assert not (tmp_path / "units").exists()
