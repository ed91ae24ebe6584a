"""``drill run``: restore one system's latest (or chosen) snapshot onto scratch VMs at the
secondary site, check the copy, run the system's probes on it, measure RPO and RTO, tear
the scratch VMs down, and leave the evidence.

Steps, each timed from the drill's start: **plan** (snapshots read without a lock,
vCenter's facts, leftovers of crashed drills removed, addresses, scratch VM specs) →
**provision** (the provisioning code) → **configure** (the configure code: playbooks/drill.yml)
→ **restore** (``restic restore --verify`` on each scratch VM; meanwhile the snapshot's
listing and sampled hashes are read there too) → **check** (listing and hashes against the
restored tree) → **probes** → **teardown** (always, unless ``keep``: on failure, on Ctrl-C,
on SIGTERM; a second Ctrl-C does not stop it).

Achieved RPO = drill start − the restored snapshot's time (the oldest, with several VMs);
achieved RTO = drill start → the moment every probe has passed on the restored copy.
The verdict is ``passed`` only when the copy checks out, every probe passes and both are
within the tier's targets. The ledger records the drill as ``passed``, ``failed`` or
``aborted``; the evidence (JSON + HTML) goes under ``<state>/evidence/<drill id>/``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.actions.drill import recovery as drill_recovery
from orchestrator.actions.drill import scratch as drill_scratch
from orchestrator.actions.drill.checks import (
    SAMPLES,
    SnapshotSide,
    compare,
    read_samples,
    restored_side,
    run_probe,
    snapshot_side,
)
from orchestrator.actions.drill.plan import (
    AddressBook,
    DrillPlan,
    ScratchVM,
    choose_snapshots,
    data_vms,
    drill_site,
    drillable,
    plan_drill,
    scratch_name,
    taken_addresses,
)
from orchestrator.actions.drill.remote import list_snapshots, remote_command, restic_version
from orchestrator.actions.drill.remote import scratch_repository as repository_for
from orchestrator.actions.drill.result import (
    DRILL_STEP,
    RECOVERY_STEP,
    Cancel,
    DrillAborted,
    DrillProgress,
    DrillResult,
    NoDrillProgress,
    RestoredDatabase,
    StepRecord,
    judge,
    mark_not_run,
)
from orchestrator.actions.drill.sql_probes import run_sql_probe
from orchestrator.actions.provision import vcenters as provision_vcenters
from orchestrator.adapters.restic_argv import make_restore_argv
from orchestrator.adapters.ssh import Remote
from orchestrator.adapters.vsphere import VCenter, open_vcenters
from orchestrator.adapters.vsphere_facts import Inventory
from orchestrator.errors import EXIT_BAD_INPUT, HopnhatError, PlanError
from orchestrator.estate.recovery import RecoveryStep
from orchestrator.human import size
from orchestrator.interrupts import only_said
from orchestrator.ledger import Ledger, operator_name
from orchestrator.settings import Paths


class _StepFailed(Exception):
    def __init__(self, step: str, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.step = step
        self.reasons = reasons


@dataclass
class _Drill:
    paths: Paths
    result: DrillResult
    ledger: Ledger
    progress: DrillProgress
    cancel: Cancel
    mono0: float
    remotes: dict[str, Remote] = field(default_factory=dict)
    provisioned: bool = False

    @property
    def restic(self) -> str:
        """The restic program on the scratch VMs (the one configure gives every client)."""
        return self.paths.estate.settings.restic.host_binary

    @contextmanager
    def step(self, name: str, cancellable: bool = True,
             kind: str = DRILL_STEP) -> Iterator[list[str]]:
        """Time step ``name`` (of ``kind``); the block may append a detail line. A
        HopnhatError in it fails the drill at this step (or, once the drill is cancelled,
        stops it)."""
        if cancellable:
            self.cancel.check()
        start = time.monotonic() - self.mono0
        detail: list[str] = []
        self.ledger.event(self.result.drill_id, self.result.system, "step", step=name,
                          phase="started", at_seconds=round(start, 3))
        self.progress.step_started(self.result.drill_id, name)
        ok = False
        try:
            yield detail
            ok = True
        except HopnhatError as exc:
            if cancellable and self.cancel.event.is_set():
                raise KeyboardInterrupt from None
            detail.append(str(exc))
            raise _StepFailed(name, [f"{name}: {exc}"]) from None
        except _StepFailed as exc:
            detail.extend(exc.reasons)
            if cancellable and self.cancel.event.is_set():
                # the step failed because the drill was stopped (its SSH sessions cut)
                raise KeyboardInterrupt from None
            raise
        finally:
            record = StepRecord(name, start, time.monotonic() - self.mono0 - start, ok,
                                "; ".join(detail), kind)
            self.result.steps.append(record)
            self.ledger.event(self.result.drill_id, self.result.system, "step", step=name,
                              step_kind=kind, phase="finished", ok=ok,
                              seconds=round(record.seconds, 3), detail=record.detail)
            self.progress.step_finished(self.result.drill_id, record)


def run_drill(paths: Paths, code: str, *, ledger: Ledger, snapshot: str = "latest",
              keep: bool = False, samples: int = SAMPLES, lang: str = "en",
              progress: DrillProgress | None = None, cancel: Cancel | None = None,
              params: dict[str, Any] | None = None) -> DrillResult:
    """The drill of system ``code`` (see the module's doc), recorded in ``ledger`` and
    written as evidence. ``cancel`` stops it from another thread.

    Out: :class:`DrillResult` (its ``verdict``: passed or failed). Raises PlanError (exit
    2) for a system that cannot be drilled, before anything is recorded, and DrillAborted
    (exit 130) after the teardown of a drill stopped by Ctrl-C, SIGTERM or ``cancel``.
    """
    from orchestrator.actions.drill.evidence import write_evidence

    reason = drillable(paths.estate, code)
    if reason:
        raise PlanError(reason, exit_code=EXIT_BAD_INPUT)
    drill_site(paths.estate)
    started, mono0 = time.time(), time.monotonic()
    drill_id = ledger.start("drill", paths.estate.id, {
        **(params or {}), "system": code, "snapshot": snapshot, "keep": keep,
        "pid": os.getpid(), "host": socket.gethostname()})
    drill = _Drill(paths, DrillResult(drill_id, paths.estate.id, code, operator_name(),
                                      started), ledger, progress or NoDrillProgress(),
                   cancel or Cancel(), mono0)
    book = AddressBook(paths.state)
    result = drill.result
    aborted = False
    try:
        _responsive(drill, lambda: _stages(drill, book, snapshot, keep, samples))
    except _StepFailed as exc:
        result.failed_step, result.reasons = exc.step, exc.reasons
    except KeyboardInterrupt:
        aborted = True
        result.reasons = ["stopped by the operator"]
    finally:
        for remote in drill.remotes.values():
            remote.close()
        with shielded():
            if result.plan is not None and drill.provisioned and not keep:
                try:
                    with drill.step("teardown", cancellable=False) as detail:
                        _teardown(drill, detail)
                except _StepFailed as exc:
                    result.reasons += exc.reasons
            result.kept = keep and drill.provisioned
            book.release(drill_id)
            judge(result, aborted)
            mark_not_run(result, paths.estate.systems[code].drill)
            result.finished_at = time.time()
            write_evidence(paths, result, ledger, lang)
            ledger.finish(drill_id, result.verdict, result.summary())
    if aborted:
        raise DrillAborted(f"drill {drill_id} of {code} was stopped; its scratch VMs were "
                           "torn down" if not keep else f"drill {drill_id} was stopped")
    return result


def _responsive(drill: _Drill, work: Callable[[], None]) -> None:
    """``work()``; in the main thread, run in a thread of its own while the main thread
    waits in short slices, so Ctrl-C and SIGTERM are handled at once (a signal delivered to
    another thread never wakes a main thread blocked without a timeout). On an interrupt
    the drill is cancelled and ``work`` is waited for (its SSH sessions are cut at once; a
    vCenter task or an Ansible run in flight ends first), then the interrupt goes on."""
    if threading.current_thread() is not threading.main_thread():
        work()
        return
    failure: list[BaseException] = []

    def runner() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the main thread below
            failure.append(exc)

    worker = threading.Thread(target=runner, name=f"drill-{drill.result.system}")
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except KeyboardInterrupt:
        drill.cancel.abort()
        with shielded():
            worker.join()
        raise
    if failure:
        raise failure[0]


def _stages(drill: _Drill, book: AddressBook, selector: str, keep: bool, samples: int) -> None:
    """The drill's steps in order; a step that fails stops the drill there."""
    with drill.step("plan") as detail:
        plan = _plan(drill, book, selector, keep, detail)
    with drill.step("provision"):
        _provision(drill, plan)
    with drill.step("configure"):
        _configure(drill, plan)
    with drill.step("restore"):
        sides = _restore_and_read(drill, plan, samples)
    with drill.step("check"):
        _check(drill, plan, sides)
    for step in plan.recovery:
        with drill.step(step.name, kind=RECOVERY_STEP) as detail:
            _recover(drill, plan, step, detail)
    with drill.step("probes"):
        _probes(drill, plan)


def _site_vcenters(paths: Paths) -> AbstractContextManager[dict[str, VCenter]]:
    """A session with the vCenter of the drill site for the block."""
    return open_vcenters(provision_vcenters.endpoints(paths, [drill_site(paths.estate).name]))


def _plan(drill: _Drill, book: AddressBook, selector: str, keep: bool,
          detail: list[str]) -> DrillPlan:
    """The snapshots chosen, the leftovers of crashed drills removed, scratch addresses
    taken, the scratch VMs planned; the plan recorded and shown."""
    paths, result = drill.paths, drill.result
    estate, code = paths.estate, result.system
    site = drill_site(estate)
    assert site.drill_network is not None
    chosen = choose_snapshots(code, data_vms(estate, code), selector,
                              list_snapshots(paths, code))
    names = {scratch_name(result.drill_id, name) for name in chosen}
    with _site_vcenters(paths) as vcenters:
        facts = provision_vcenters.read_facts(vcenters, names)
        taken = taken_addresses(estate, facts)  # leftovers' too: they may linger a moment
        facts = _without_leftovers(drill, vcenters, facts, names, detail)
        pool = site.networks[site.drill_network].pool
        addresses = book.take(result.drill_id, pool.addresses(),
                              taken | taken_addresses(estate, facts), len(chosen))
        plan = plan_drill(estate, code, result.drill_id, chosen, addresses, keep=keep)
    result.plan = plan
    drill.ledger.event(result.drill_id, code, "plan", **plan.as_dict())
    drill.progress.planned(plan)
    return plan


def _without_leftovers(drill: _Drill, vcenters: dict[str, VCenter],
                       facts: dict[str, Inventory], names: set[str],
                       detail: list[str]) -> dict[str, Inventory]:
    """Remove the scratch VMs crashed drills left behind; the facts, read again if any
    were."""
    left = drill_scratch.leftovers(drill.paths, facts, drill.ledger, drill.result.drill_id)
    if not left:
        return facts
    gone = drill_scratch.remove_leftovers(drill.paths, left, vcenters, drill.ledger)
    detail.append(f"removed {len(gone)} leftover scratch VM(s) of {', '.join(sorted(left))}")
    return provision_vcenters.read_facts(vcenters, names)


def _provision(drill: _Drill, plan: DrillPlan) -> None:
    drill.provisioned = True
    with _site_vcenters(drill.paths) as vcenters:
        facts = provision_vcenters.read_facts(vcenters, {vm.name for vm in plan.vms})
        drill_scratch.provision_scratch(drill.paths, plan, vcenters, facts, drill.ledger,
                                        stopped=drill.cancel.event.is_set)


def _configure(drill: _Drill, plan: DrillPlan) -> None:
    """The restic client on each scratch VM, then an SSH session with each."""
    paths = drill.paths
    drill_scratch.configure_scratch(paths, plan)
    for scratch in plan.scratch:
        drill.remotes[scratch.vm.name] = drill.cancel.register(
            Remote(drill_scratch.target(paths, scratch.vm), paths.estate.settings.ssh.alive))
    drill.result.restic_version = restic_version(drill.remotes[plan.scratch[0].vm.name],
                                                 drill.restic)


def _restore_and_read(drill: _Drill, plan: DrillPlan, samples: int) -> dict[str, SnapshotSide]:
    """``restic restore --verify`` on each scratch VM and, beside it, the snapshot's side of
    the check read there (:func:`_snapshot_of`). Out: scratch VM → its snapshot side."""
    workers = ThreadPoolExecutor(max_workers=2 * len(plan.scratch))
    try:
        restores = [workers.submit(_restore, drill, s.vm.name, s.snapshot.id)
                    for s in plan.scratch]
        listings = {s.vm.name: workers.submit(_snapshot_of, drill, plan, s, samples)
                    for s in plan.scratch}
        failures = [f"restore: {exc}" for f in restores if (exc := f.exception()) is not None]
        if failures:
            raise _StepFailed("restore", failures)
        return {name: future.result() for name, future in listings.items()}
    finally:
        workers.shutdown(wait=True, cancel_futures=True)


def _snapshot_of(drill: _Drill, plan: DrillPlan, scratch: ScratchVM,
                 samples: int) -> SnapshotSide:
    """The snapshot's listing, then its sampled files read again from the repository: both
    while the restore runs (they need only the repository), so that after it only the
    restored side is left to read."""
    remote = drill.remotes[scratch.vm.name]
    repo = repository_for(drill.paths.estate, drill.result.system)
    side = snapshot_side(remote, repo, scratch.snapshot.id, plan.paths, samples=samples,
                         seed=drill.result.drill_id, timeout=3600, restic=drill.restic)
    return read_samples(remote, repo, scratch.snapshot.id, side, 3600, drill.restic)


def _check(drill: _Drill, plan: DrillPlan, sides: dict[str, SnapshotSide]) -> None:
    """Each restored tree's counts, sizes and sampled hashes against the snapshot's."""
    problems: list[str] = []
    for scratch in plan.scratch:
        side = sides[scratch.vm.name]
        counts, missing, hashes = restored_side(drill.remotes[scratch.vm.name], plan.paths,
                                                list(side.samples), 3600)
        check = compare(scratch.vm.name, side, counts, missing, hashes)
        drill.result.checks.append(check)
        problems += check.problems()
    if problems:
        raise _StepFailed("check", [f"check: {p}" for p in problems])


def _recover(drill: _Drill, plan: DrillPlan, step: RecoveryStep, detail: list[str]) -> None:
    """Recovery step ``step`` on each scratch VM in turn (a failure fails the drill at this
    step; the later steps and the probes do not run)."""
    for scratch in plan.scratch:
        drill.cancel.check()
        remote = drill.remotes[scratch.vm.name]
        if step.restore_database is None:
            drill_recovery.run_step(remote, step)
            continue
        started = time.monotonic()
        database = plan.database(step.restore_database)
        loaded = drill_recovery.restore_database(
            remote, repository_for(drill.paths.estate, plan.system), drill.restic, database,
            step.timeout.total_seconds(),
            drill_recovery.jobs_for(drill_recovery.online_cpus(remote, scratch.vm.cpu)))
        drill.result.databases.append(RestoredDatabase(
            scratch.vm.name, step.name, loaded.manifest, time.monotonic() - started,
            loaded.fetch_seconds, loaded.load_seconds))
        manifest = loaded.manifest
        detail.append(f"{scratch.vm.name}: dump {manifest.name} (snapshot "
                      f"{manifest.snapshot[:8]}, {size(manifest.bytes)}, dumped "
                      f"{manifest.dumped_at.isoformat()}) loaded into {database.engine} "
                      f"{database.database}: fetched in {loaded.fetch_seconds:.1f} s, "
                      f"loaded in {loaded.load_seconds:.1f} s")


def _probes(drill: _Drill, plan: DrillPlan) -> None:
    """The system's probes on each scratch VM; when all pass, the RTO is reached."""
    result = drill.result
    rpo = timedelta(seconds=plan.rpo_seconds)
    for scratch in plan.scratch:
        remote = drill.remotes[scratch.vm.name]
        for probe in plan.probes:
            drill.cancel.check()
            result.probes.append(
                run_probe(remote, probe) if probe.sql is None
                else run_sql_probe(remote, probe, plan.database(probe.sql), rpo))
    failed = [p.describe() for p in result.probes if not p.ok]
    if failed:
        raise _StepFailed("probes", [f"probes: {f}" for f in failed])
    result.rto_seconds = time.monotonic() - drill.mono0


def _restore(drill: _Drill, vm_name: str, snapshot_id: str) -> None:
    repo = repository_for(drill.paths.estate, drill.result.system)
    command = remote_command(repo, make_restore_argv(repo, snapshot_id, "/", verify=True),
                             drill.restic)
    done = drill.remotes[vm_name].run(command + " 2>&1", timeout=24 * 3600)
    if done.returncode != 0:
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower() or "fatal" in line.lower()]
        raise HopnhatError(f"{vm_name}: restic restore --verify of {snapshot_id[:8]} exited "
                           f"{done.returncode}: {(errors or lines or ['no output'])[-1][:300]}")
    if "finished verifying" not in done.stdout:
        raise HopnhatError(f"{vm_name}: restic restore did not report its verification")


def _teardown(drill: _Drill, detail: list[str]) -> None:
    plan = drill.result.plan
    assert plan is not None
    with _site_vcenters(drill.paths) as vcenters:
        done = drill_scratch.teardown_scratch(drill.paths, plan.drill_id, plan.vms, vcenters,
                                              drill.ledger)
    detail.append(f"destroyed {', '.join(o.vm for o in done.outcomes) or 'nothing'}")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def shielded() -> AbstractContextManager[None]:
    """While the teardown runs, Ctrl-C and SIGTERM only say so (main thread only)."""
    return only_said("the drill is tearing down its scratch VMs; please wait")
