"""``migrate run | sync | cutover``: move a system to another site by restore, keep the copy
in step during the parallel run, and hand over.

Each is one ledger run (kind ``migrate``, params ``system``, ``to``, ``step``) made of timed
steps, and ends with handover evidence (:mod:`orchestrator.actions.migrate.evidence`):

- **run**: ``backup`` (the source now: never move without a fresh snapshot; skipped when
  ``--snapshot`` names one) → ``plan`` (the snapshots, the target VMs' provisioning plan and
  capacity) → ``provision`` (idempotent: a target VM an earlier run built is kept, not
  rebuilt, unless ``--clean``) → ``configure`` (``playbooks/migrate.yml``: restic client, no
  backup schedule) → ``restore`` (``restic restore --verify``; on restic 0.17 or newer each
  backup path with ``--delete``) → ``check`` (the manifest: every entry of the snapshot
  against the restored tree, entries the snapshot lacks deleted first — restic 0.14 has no
  ``--delete``) → ``probes`` (the system's own).
- **sync**: the same over the target the run made (configure only for a target VM rebuilt):
  a delta, then the manifest again, and what changed since the last manifest.
- **cutover**: ``stop writes`` (the estate's commands on each source VM) → a sync →
  ``schedule`` (the backup schedule installed on the targets) → recorded with the end of the
  parallel run. If any step fails or the operator stops it, ``start writes`` puts each source
  back and nothing is recorded as cut over.

The source is only ever read — its backup job runs, restic reads with ``--no-lock`` — except
for the stop-writes and start-writes commands at cutover.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from orchestrator.actions.backup.run import run_backups, select_clients
from orchestrator.actions.configure import converge, extra_vars
from orchestrator.actions.drill.checks import run_probe
from orchestrator.actions.drill.remote import (
    list_snapshots,
    remote_command,
    restic_version,
)
from orchestrator.actions.drill.remote import scratch_repository as repository_for
from orchestrator.actions.drill.result import StepRecord
from orchestrator.actions.drill.scratch import target as ssh_target
from orchestrator.actions.drill.scratch import wait_for_ssh
from orchestrator.actions.migrate import manifest
from orchestrator.actions.migrate.plan import (
    LATEST,
    MigrationPlan,
    choose,
    migration_of,
    plan_migration,
    sources,
)
from orchestrator.actions.migrate.result import (
    ABORTED,
    CUTOVER,
    PASSED,
    RUN,
    STEPS,
    SYNC,
    MigrationResult,
    TargetCheck,
)
from orchestrator.actions.migrate.state import CUT_OVER, MigrationState, state_of
from orchestrator.actions.provision import apply as provision_apply
from orchestrator.actions.provision import destroy as provision_destroy
from orchestrator.actions.provision import model as provision_model
from orchestrator.actions.provision import plan as provision_plan
from orchestrator.actions.provision import vcenters as provision_vcenters
from orchestrator.adapters.ansible import PLAYBOOKS
from orchestrator.adapters.restic_argv import make_ls_argv, make_restore_argv
from orchestrator.adapters.restic_results import parse_ls_line
from orchestrator.adapters.ssh import Remote
from orchestrator.adapters.vsphere import open_vcenters
from orchestrator.errors import (
    EXIT_BAD_INPUT,
    HopnhatError,
    PlanError,
    ResticError,
    VSphereError,
)
from orchestrator.estate.inventory import _connection, restic_vars, system_vars
from orchestrator.estate.model import VM
from orchestrator.ledger import Ledger, operator_name
from orchestrator.quoting import shell_join
from orchestrator.settings import Paths

KIND = "migrate"
MIGRATE_PLAYBOOK = PLAYBOOKS / "migrate.yml"
TREE_SCRIPT = Path(__file__).with_name("tree.py")
RESTORE_TIMEOUT = 24 * 3600.0
DELETE_SINCE = (0, 17, 0)  # restic restore --delete


class _StepFailed(Exception):
    def __init__(self, step: str, reasons: list[str], exit_code: int = 1) -> None:
        super().__init__("; ".join(reasons))
        self.step = step
        self.reasons = reasons
        self.exit_code = exit_code


class MigrationAborted(HopnhatError):
    """The operator stopped a migration (Ctrl-C, SIGTERM)."""

    exit_code = 130


class Progress(Protocol):
    """What a migration tells as it goes (the CLI prints it)."""

    def step_started(self, name: str) -> None: ...

    def step_finished(self, record: StepRecord) -> None: ...

    def line(self, text: str) -> None: ...


class NoProgress:
    def step_started(self, name: str) -> None:
        del name

    def step_finished(self, record: StepRecord) -> None:
        del record

    def line(self, text: str) -> None:
        del text


@dataclass
class _Move:
    paths: Paths
    result: MigrationResult
    ledger: Ledger
    progress: Progress
    mono0: float
    remotes: dict[str, Remote] = field(default_factory=dict)

    @property
    def restic(self) -> str:
        return self.paths.estate.settings.restic.host_binary

    def remote(self, vm: VM) -> Remote:
        if vm.name not in self.remotes:
            self.remotes[vm.name] = Remote(ssh_target(self.paths, vm),
                                           self.paths.estate.settings.ssh.alive)
        return self.remotes[vm.name]

    @contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        start = time.monotonic() - self.mono0
        detail: list[str] = []
        self.ledger.event(self.result.run_id, self.result.system, "step", step=name,
                          phase="started", at_seconds=round(start, 3))
        self.progress.step_started(name)
        ok = False
        try:
            yield detail
            ok = True
        except HopnhatError as exc:
            detail.append(str(exc))
            # bad input found on the way (an unknown or too old snapshot) stays exit 2
            bad = EXIT_BAD_INPUT if exc.exit_code == EXIT_BAD_INPUT else 1
            raise _StepFailed(name, [f"{name}: {exc}"], bad) from None
        except _StepFailed as exc:
            detail.extend(exc.reasons)
            raise
        finally:
            record = StepRecord(name, start, time.monotonic() - self.mono0 - start, ok,
                                "; ".join(detail)[:4000])
            self.result.steps.append(record)
            self.ledger.event(self.result.run_id, self.result.system, "step", step=name,
                              phase="finished", ok=ok, seconds=round(record.seconds, 3),
                              detail=record.detail)
            self.progress.step_finished(record)


# ---------------------------------------------------------------- the entry point


def migrate(paths: Paths, code: str, to: str, step: str, *, ledger: Ledger,
            snapshot: str = LATEST, reason: str = "", clean: bool = False, lang: str = "vi",
            progress: Progress | None = None) -> MigrationResult:
    """Run ``step`` (run, sync or cutover) of system ``code``'s move to site ``to``.

    Out: :class:`MigrationResult` (verdict passed or failed; its evidence written). Raises
    PlanError (exit 2) before anything is recorded for a system, site or state that does
    not allow the step, and MigrationAborted (exit 130) after recording a run the operator
    stopped."""
    from orchestrator.actions.migrate.evidence import write_evidence

    state = _allowed(paths, code, to, step, ledger, snapshot)
    started, mono0 = time.time(), time.monotonic()
    run_id = ledger.start(KIND, paths.estate.id, {
        "system": code, "to": to, "step": step, "snapshot": snapshot, "reason": reason,
        "clean": clean, "pid": os.getpid(), "host": socket.gethostname()})
    result = MigrationResult(run_id, step, paths.estate.id, code, to, operator_name(),
                             started, snapshot_reason=reason)
    move = _Move(paths, result, ledger, progress or NoProgress(), mono0)
    aborted = False
    try:
        _stages(move, step, snapshot, reason, clean, state.last_manifest)
        result.verdict = PASSED
    except _StepFailed as exc:
        result.failed_step, result.reasons = exc.step, exc.reasons
        result.failed_exit = exc.exit_code
    except KeyboardInterrupt:
        aborted = True
        result.verdict = ABORTED
        result.reasons = ["stopped by the operator"]
    finally:
        _wind_up(move)
        write_evidence(paths, result, ledger, lang)
        ledger.finish(run_id, result.verdict, result.summary())
    if aborted:
        raise MigrationAborted(f"migration {run_id} of {code} was stopped; the target VMs are "
                               f"kept: `hopnhat migrate {step} --system {code} --to {to}` "
                               "goes on from there")
    return result


def _allowed(paths: Paths, code: str, to: str, step: str, ledger: Ledger, snapshot: str
             ) -> MigrationState:
    """The system's migration state, when it allows ``step`` to ``to`` with ``snapshot``.
    Raises PlanError (exit 2) otherwise."""
    if step not in STEPS:
        raise PlanError(f"unknown migration step {step!r}", exit_code=EXIT_BAD_INPUT)
    migration_of(paths.estate, code, to)
    state = state_of(ledger, paths.estate.id, code)
    if state.name == CUT_OVER:
        raise PlanError(f"system {code} was cut over to {state.to} on {state.cut_over_at}: "
                        "nothing to move any more (its parallel run ends "
                        f"{state.parallel_until})", exit_code=EXIT_BAD_INPUT)
    if step in (SYNC, CUTOVER) and state.last_copy is None:
        raise PlanError(f"system {code} has not been copied to {to} yet: run `hopnhat "
                        f"migrate run --system {code} --to {to}` first",
                        exit_code=EXIT_BAD_INPUT)
    if snapshot != LATEST and step == CUTOVER:
        raise PlanError("--snapshot is for run and sync: a cutover always moves the "
                        "snapshot it takes once writes are stopped", exit_code=EXIT_BAD_INPUT)
    if snapshot != LATEST and not re.fullmatch(r"[0-9a-f]{8,64}", snapshot):
        raise PlanError(f"--snapshot {snapshot!r}: give a snapshot id (8 to 64 hex digits)",
                        exit_code=EXIT_BAD_INPUT)
    return state


def _wind_up(move: _Move) -> None:
    """Close the move's SSH sessions and, unless it passed, start the sources' writes
    again, take their marks off and record no parallel run."""
    result = move.result
    for remote in move.remotes.values():
        remote.close()
    move.remotes.clear()
    if result.writes_stopped and not result.passed:
        _start_writes(move)
    if result.source_marked and not result.passed:
        _unmark_sources(move)
    if not result.passed:
        result.parallel_until = None
    result.finished_at = time.time()


def _stages(move: _Move, step: str, selector: str, reason: str, clean: bool,
            last_manifest: str | None) -> None:
    """The steps of ``step`` (run, sync or cutover), in order, each one recorded
    (:meth:`_Move.step`); ``selector``: the snapshot asked for (LATEST: a backup now)."""
    estate, code = move.paths.estate, move.result.system
    source_vms = sources(estate, code)
    migration = estate.systems[code].migration
    assert migration is not None
    # first what needs no change anywhere: the target site has room (else nothing is
    # backed up, stopped or built), then the source's fresh snapshot
    the_plan = _plan_step(move, clean=clean and step == RUN)
    if step == CUTOVER:
        with move.step("stop writes") as detail:
            move.result.writes_stopped = True
            _run_commands(move, source_vms, migration.stop_writes, "stop-writes", detail)
    if selector == LATEST:
        _backup_step(move, source_vms)
    plan = _snapshot_step(move, source_vms, the_plan, selector, reason)
    rebuilt = _provision_step(move, plan)
    if step == RUN or rebuilt:
        with move.step("configure") as detail:
            detail.append(_configure(move.paths, plan, schedule=False))
    listings = _restore_step(move, plan)
    _check_step(move, plan, step, last_manifest, listings)
    _probes_step(move, plan)
    if step == CUTOVER:
        until = time.time() + migration.parallel_run.total_seconds()
        with move.step("mark source") as detail:
            move.result.source_marked = True
            detail.append(_mark_sources(move, parallel_until_text(until)))
        with move.step("schedule") as detail:
            detail.append(_configure(move.paths, plan, schedule=True))
        move.result.parallel_until = until


def _plan_step(move: _Move, *, clean: bool) -> provision_model.Plan:
    """``plan``: the target VMs' provisioning plan (after destroying those an earlier run
    built, with ``clean``), checked for capacity. Out: the plan."""
    paths, result = move.paths, move.result
    estate = paths.estate
    targets = estate.targets_of(result.system)
    with move.step("plan") as detail:
        with open_vcenters(provision_vcenters.endpoints(paths, [result.to])) as vcenters:
            facts = provision_vcenters.read_facts(vcenters, {vm.name for vm in targets})
            if clean:
                gone = _clean(paths, targets, vcenters, facts, move.ledger)
                detail.append(f"--clean: destroyed {', '.join(gone) or 'nothing'}")
                facts = provision_vcenters.read_facts(vcenters, {vm.name for vm in targets})
            the_plan = provision_plan.plan(estate, targets, facts)
            provision_plan.check(the_plan)
        result.plan = plan_migration(estate, result.system, result.to, the_plan)
        detail.append(f"{len(the_plan.pending)} VM(s) to build, "
                      f"{len(targets) - len(the_plan.pending)} already there")
    return the_plan


def _backup_step(move: _Move, source_vms: Sequence[VM]) -> None:
    """``backup``: the source VMs backed up now, every one of them successfully."""
    result = move.result
    with move.step("backup") as detail:
        clients = select_clients(move.paths.estate, [result.system],
                                 [vm.name for vm in source_vms])
        backup = run_backups(move.paths, clients, ledger=move.ledger,
                             params={"migration": result.run_id},
                             on_line=lambda host, line: move.progress.line(f"{host}: {line}"))
        result.backup_run = backup.run_id
        bad = [h for h in backup.hosts if not h.ok]
        if bad:
            raise _StepFailed("backup", [
                f"backup: {h.host}: {h.result}: {h.error_message or h.stage or 'no result'}"
                for h in bad])
        detail.append(", ".join(f"{h.host}: {h.snapshot_id and h.snapshot_id[:8]}"
                                for h in backup.hosts))


def _snapshot_step(move: _Move, source_vms: Sequence[VM], the_plan: provision_model.Plan,
                   selector: str, reason: str) -> MigrationPlan:
    """``snapshot``: the snapshot of each source VM to move (the latest, or the one
    ``selector`` names, within the tier's RPO unless ``reason`` says why not). Out: the
    migration's plan with them (recorded in the result and the ledger)."""
    paths, result = move.paths, move.result
    estate, code = paths.estate, result.system
    tier = estate.tier(estate.systems[code].tier)
    with move.step("snapshot") as detail:
        snapshots = list_snapshots(paths, code)
        chosen = choose(code, source_vms, snapshots, selector, tier.rpo.total_seconds(),
                        reason)
        plan = result.plan = plan_migration(estate, code, result.to, the_plan, chosen,
                                            "named: " + reason if selector != LATEST
                                            else "fresh")
        move.ledger.event(result.run_id, code, "plan", **plan.as_dict())
        detail.append(", ".join(f"{name}: {snap.short_id} of {snap.time:%Y-%m-%d %H:%M:%S}"
                                for name, snap in chosen.items()))
    return plan


def _provision_step(move: _Move, plan: MigrationPlan) -> bool:
    """``provision``: the target VMs the plan lacks built, then every target VM answering
    SSH. Out: whether any was built."""
    rebuilt = False
    with move.step("provision") as detail:
        if plan.provision is not None and plan.provision.has_changes:
            rebuilt = True
            detail.append(_provision(move, plan))
        for vm in plan.targets:
            wait_for_ssh(move.paths, vm)
    return rebuilt


def _provision(move: _Move, plan: MigrationPlan) -> str:
    """Build the target VMs missing now (planned afresh), as ``hopnhat apply`` would. Out:
    what was built, in words. Raises VSphereError for a VM that could not be built."""
    paths, estate = move.paths, move.paths.estate
    settings = estate.settings.provisioning
    with open_vcenters(provision_vcenters.endpoints(paths, [move.result.to])) as vcenters:
        facts = provision_vcenters.read_facts(vcenters, {vm.name for vm in plan.targets})
        fresh = provision_plan.plan(estate, list(plan.targets), facts)
        provision_plan.check(fresh)
        applied = provision_apply.apply(
            fresh, facts, vcenters, ledger=move.ledger,
            concurrency=settings.concurrency, clones_per_host=settings.clones_per_host,
            clones_per_datastore=settings.clones_per_datastore,
            guest_ip_timeout=settings.guest_ip_timeout.total_seconds(),
            params={"migration": move.result.run_id, "system": move.result.system})
    if applied.failed:
        broken = applied.failed[0]
        raise VSphereError(f"target VM {broken.vm}: {broken.failed_step}: {broken.error}")
    return f"built {', '.join(a.name for a in fresh.pending)}"


def _restore_step(move: _Move, plan: MigrationPlan) -> dict[str, dict[str, manifest.Entry]]:
    """``restore``: each pair's snapshot restored onto its target (with ``--delete`` where
    restic has it). Out: each target's listing of its snapshot (target name → path →
    entry)."""
    result = move.result
    with move.step("restore") as detail:
        first = move.remote(plan.pairs[0].target)
        result.restic_version = restic_version(first, move.restic)
        version = tuple(int(n) for n in result.restic_version.split("."))
        listings: dict[str, dict[str, manifest.Entry]] = {}
        for pair in plan.pairs:
            assert pair.snapshot is not None
            listings[pair.target.name], owners = _listing(move, pair.target, pair.snapshot.id,
                                                          plan.paths)
            _restore(move, pair.target, pair.snapshot.id, plan.paths,
                     delete=version >= DELETE_SINCE)
            if version >= DELETE_SINCE:  # a sub-folder's restore leaves the folder itself
                _root_metadata(move, pair.target, plan.paths, listings[pair.target.name],
                               owners)
        detail.append(f"restic {result.restic_version}, "
                      + ("--delete" if version >= DELETE_SINCE else "listing-based deletion"))
    return listings


def _check_step(move: _Move, plan: MigrationPlan, step: str, last_manifest: str | None,
                listings: dict[str, dict[str, manifest.Entry]]) -> None:
    """``check``: each target's tree against its snapshot's listing, what changed since
    the last manifest (``last_manifest``; not on a first run), the manifest stored. Raises
    _StepFailed for any difference."""
    from orchestrator.actions.migrate.evidence import store_manifest

    paths, result = move.paths, move.result
    with move.step("check") as detail:
        previous = manifest.read(Path(last_manifest)) if last_manifest and \
            Path(last_manifest).is_file() else {}
        manifests: dict[str, dict[str, manifest.Entry]] = {}
        problems: list[str] = []
        for pair in plan.pairs:
            assert pair.snapshot is not None
            check, entries = _check(move, pair.target, pair.source.name, pair.snapshot.id,
                                    plan.paths, listings[pair.target.name])
            if step != RUN or previous:
                check.changes = manifest.changes(previous.get(pair.target.name, {}), entries)
            result.checks.append(check)
            manifests[pair.target.name] = entries
            problems += check.differences.sentences(pair.target.name)
        result.manifest_file, result.manifest_sha256 = store_manifest(paths, result.run_id,
                                                                      manifests)
        detail.append(f"manifest {result.manifest_sha256[:16]}: "
                      f"{sum(len(m) for m in manifests.values())} entries")
        if problems:
            raise _StepFailed("check", [f"check: {p}" for p in problems])


def _probes_step(move: _Move, plan: MigrationPlan) -> None:
    """``probes``: the system's own command probes on each target VM, every one passing
    (a sql probe checks a database a drill's recovery restored: a move carries files)."""
    result = move.result
    probes = [p for p in move.paths.estate.systems[result.system].drill.probes if p.command]
    with move.step("probes"):
        for pair in plan.pairs:
            for probe in probes:
                result.probes.append(run_probe(move.remote(pair.target), probe))
        failed = [p.describe() for p in result.probes if not p.ok]
        if failed:
            raise _StepFailed("probes", [f"probes: {f}" for f in failed])


# ---------------------------------------------------------------- the pieces


def _clean(paths: Paths, targets: Sequence[VM], vcenters: Any, facts: Any,
           ledger: Ledger) -> list[str]:
    """Destroy the target VMs this estate built (``--clean``): those of the targets' names
    that carry the system's mark, never a VM of the system's own."""
    names = {vm.name for vm in targets}
    dplan = provision_destroy.plan_destroy(paths.estate, targets[0].system, facts,
                                           datacenters=[targets[0].datacenter], vms=targets)
    mine = tuple(a for a in dplan.actions if a.name in names)

    done = provision_destroy.destroy(replace(dplan, actions=mine, adopted=()), vcenters,
                                     ledger=ledger, concurrency=max(1, len(mine)))
    if done.failed:
        raise VSphereError(f"--clean: {done.failed[0].vm}: {done.failed[0].error}")
    return [o.vm for o in done.outcomes if o.ok]


def _inventory(paths: Paths, plan: MigrationPlan) -> dict[str, Any]:
    names = [vm.name for vm in plan.targets]
    hostvars = {vm.name: {**_connection(paths, str(vm.ip), 22), "hopnhat_site": vm.site,
                          "hopnhat_role": vm.role, "hopnhat_data": vm.data,
                          "ansible_python_interpreter": "/usr/bin/python3"}
                for vm in plan.targets}
    return {
        "migration_targets": {"hosts": names},
        "backup_clients": {"hosts": [vm.name for vm in plan.targets if vm.data]},
        f"system_{plan.system}": {"hosts": names,
                                  "vars": system_vars(paths, plan.system)},
        "all": {"children": ["ungrouped", "backup_clients", "migration_targets",
                             f"system_{plan.system}"],
                "vars": {"hopnhat_estate": paths.estate.id, **restic_vars(paths)}},
        "_meta": {"hostvars": hostvars},
    }


def _configure(paths: Paths, plan: MigrationPlan, *, schedule: bool) -> str:
    """Run ``playbooks/migrate.yml`` on the target VMs (the backup schedule too when
    ``schedule``). Out: a line for the step's detail. Raises AnsibleError naming the failed
    tasks."""
    run, _ = converge(paths, MIGRATE_PLAYBOOK, _inventory(paths, plan),
                      {**extra_vars(paths, [plan.system]), "migrate_schedule": schedule},
                      f"migrate-{plan.system}-{int(time.time() * 1000)}", "the target VMs",
                      forks=len(plan.targets), timeout=900)
    return f"{len(run.hosts)} host(s), {run.changed} change(s)"


def _mark_sources(move: _Move, value: str) -> str:
    """Write ``value`` (the end of the parallel run, or "" to clear it) into each source
    VM's ``hopnhat.parallel-run-until`` attribute, so that vCenter shows it too. Out: a line
    for the step's detail. Raises VSphereError naming a VM not found."""
    from orchestrator.adapters.vsphere_facts import PARALLEL_RUN_UNTIL

    estate = move.paths.estate
    vms = sources(estate, move.result.system)
    marked = []
    with open_vcenters(provision_vcenters.endpoints(move.paths, sorted({vm.site for vm in vms}))
                       ) as vcenters:
        facts = provision_vcenters.read_facts(vcenters, provision_vcenters.compared(vms))
        for vm in vms:
            url = provision_vcenters.vcenter_of(estate, vm)
            inv = facts[url]
            if vm.existing is not None:
                found, why = provision_plan.locate(vm, inv)
            else:
                found = [f for f in inv.vms_named(vm.name) if f.owner == estate.id]
                why = f"no VM {vm.name} of this estate in {vm.datacenter}"
            if len(found) != 1:
                raise VSphereError(f"marking the source {vm.name}: "
                                   f"{why or f'{len(found)} VMs match'}")
            vc = vcenters[url]
            fields = vc.ensure_fields([PARALLEL_RUN_UNTIL], dict(inv.fields))
            vc.set_fields(found[0].ref, vm.name, {fields[PARALLEL_RUN_UNTIL]: value})
            marked.append(f"{vm.where()}: {PARALLEL_RUN_UNTIL}={value or '(cleared)'}")
    return "; ".join(marked)


def _unmark_sources(move: _Move) -> None:
    """Clear the parallel-run mark a failed cutover wrote."""
    try:
        with move.step("unmark source") as detail:
            detail.append(_mark_sources(move, ""))
    except _StepFailed as exc:
        move.result.reasons += exc.reasons


def _run_commands(move: _Move, vms: Sequence[VM], commands: Sequence[str], what: str,
                  detail: list[str]) -> None:
    """The estate's ``commands`` on each of ``vms`` in order; the first that fails stops
    them and raises HopnhatError naming the VM, the command and its output."""
    for vm in vms:
        for command in commands:
            done = move.remote(vm).run(command, timeout=600)
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                raise HopnhatError(f"{vm.name}: {what} command {json.dumps(command)} exited "
                                   f"{done.returncode}: {tail[0][:300]!r}")
            detail.append(f"{vm.name}: {command}")


def _start_writes(move: _Move) -> None:
    """Put each source back as it was before the cutover (its start-writes commands)."""
    migration = move.paths.estate.systems[move.result.system].migration
    assert migration is not None
    try:
        with move.step("start writes") as detail:
            _run_commands(move, sources(move.paths.estate, move.result.system),
                          migration.start_writes, "start-writes", detail)
        move.result.writes_restored = True
    except _StepFailed as exc:
        move.result.writes_restored = False
        move.result.reasons += exc.reasons
    finally:
        for remote in move.remotes.values():
            remote.close()
        move.remotes.clear()


def restore_argv(restic: str, repo: Any, snapshot_id: str, paths: Sequence[str],
                 delete: bool) -> list[tuple[str, ...]]:
    """The restic command lines that bring a target's tree to the snapshot: one restore of
    the whole snapshot onto ``/``, or (``delete``, restic 0.17+) one per backup path, each
    confined to its own folder, deleting what the snapshot lacks there."""
    if not delete:
        return [(restic, *make_restore_argv(repo, snapshot_id, "/", verify=True)[1:])]
    out = []
    for path in paths:
        argv = make_restore_argv(repo, f"{snapshot_id}:{path}", path, verify=True)
        out.append((restic, *argv[1:], "--delete"))
    return out


def _restore(move: _Move, vm: VM, snapshot_id: str, paths: Sequence[str], *,
             delete: bool) -> None:
    repo = repository_for(move.paths.estate, move.result.system)
    for argv in restore_argv(move.restic, repo, snapshot_id, paths, delete):
        command = remote_command(repo, argv, move.restic)
        done = move.remote(vm).run(command + " 2>&1", timeout=RESTORE_TIMEOUT)
        if done.returncode != 0:
            lines = [line for line in done.stdout.splitlines() if line.strip()]
            errors = [line for line in lines
                      if "error" in line.lower() or "fatal" in line.lower()]
            raise ResticError(f"{vm.name}: restic restore --verify of {snapshot_id[:8]} "
                              f"exited {done.returncode}: "
                              f"{(errors or lines or ['no output'])[-1][:300]!r}")
        if "finished verifying" not in done.stdout:
            raise ResticError(f"{vm.name}: restic restore did not report its verification")


def tree_command(args: dict[str, Any]) -> str:
    """The command that runs :mod:`~orchestrator.actions.migrate.tree` on a VM: its text
    and one JSON argument, each quoted (no value reaches the shell unquoted)."""
    return shell_join(["python3", "-c", TREE_SCRIPT.read_text(), json.dumps(args)])


def scan(remote: Remote, paths: Sequence[str], *, hashes: bool,
         timeout: float = RESTORE_TIMEOUT) -> tuple[dict[str, manifest.Entry], list[str]]:
    """The tree under ``paths`` on a VM: path → Entry, and the paths that do not exist.
    Raises HopnhatError when the scan fails."""
    entries: dict[str, manifest.Entry] = {}
    end: dict[str, Any] = {}

    def each(line: str) -> None:
        if not line.startswith("{"):
            return
        data = json.loads(line)
        if "end" in data:
            end.update(data)
        else:
            entry = manifest.from_scan(data)
            entries[entry.path] = entry

    done = remote.run(tree_command({"mode": "scan", "paths": list(paths), "hash": hashes}),
                      timeout=timeout, on_line=each)
    if done.returncode != 0 or not end:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise HopnhatError(f"{remote.target.host}: scanning {', '.join(paths)} failed: "
                           f"{tail[0][:300]!r}")
    return entries, list(end.get("missing", []))


def _listing(move: _Move, vm: VM, snapshot_id: str, roots: Sequence[str]
             ) -> tuple[dict[str, manifest.Entry], dict[str, tuple[int | None, int | None]]]:
    """The snapshot's entries under ``roots`` (``restic ls --json`` on the VM, streamed), and
    the owner (uid, gid) of each root."""
    repo = repository_for(move.paths.estate, move.result.system)
    out: dict[str, manifest.Entry] = {}
    owners: dict[str, tuple[int | None, int | None]] = {}
    errors: list[str] = []
    prefixes = tuple(r.rstrip("/") + "/" for r in roots)

    def each(line: str) -> None:
        node = parse_ls_line(line)
        if node is None:
            if line and not line.startswith("{"):
                errors.append(line)
            return
        if node.path in roots:
            owners[node.path] = (node.uid, node.gid)
        if node.path in roots or node.path.startswith(prefixes):
            out[node.path] = manifest.from_node(node)

    command = remote_command(repo, make_ls_argv(repo, snapshot_id), move.restic) + " 2>&1"
    done = move.remote(vm).run(command, timeout=RESTORE_TIMEOUT, on_line=each)
    if done.returncode != 0:
        raise ResticError(f"restic ls {snapshot_id[:8]} on {vm.name}: "
                          f"{(errors or [f'exit {done.returncode}'])[-1][:300]!r}")
    return out, owners


def _root_metadata(move: _Move, vm: VM, roots: Sequence[str],
                   listing: dict[str, manifest.Entry],
                   owners: dict[str, tuple[int | None, int | None]]) -> None:
    """Give each backup path on the VM its owner, mode and mtime from the snapshot (restic
    0.17+ restoring ``<id>:<path>`` fills the folder, not the folder's own metadata).
    Raises HopnhatError naming the paths it could not set."""
    wanted = {root: {"m": listing[root].mode, "u": owners.get(root, (None, None))[0],
                     "g": owners.get(root, (None, None))[1], "n": listing[root].mtime_ns}
              for root in roots if root in listing}
    done = move.remote(vm).run(tree_command({"mode": "meta", "paths": list(roots),
                                             "meta": wanted}), timeout=600)
    report = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() \
        else {"errors": [done.stderr.strip()[-300:] or f"exit {done.returncode}"]}
    if report.get("errors"):
        raise HopnhatError(f"{vm.name}: setting the backup paths' own metadata: "
                           f"{'; '.join(map(str, report['errors']))[:300]}")


def _check(move: _Move, vm: VM, source: str, snapshot_id: str, roots: Sequence[str],
           wanted: dict[str, manifest.Entry]) -> tuple[TargetCheck, dict[str, manifest.Entry]]:
    """The snapshot's listing (``wanted``) against the target's tree: entries the snapshot
    lacks are deleted first (restic without ``--delete``), then every entry compared; the
    manifest's entries are the restored tree's (with their SHA-256)."""
    remote = move.remote(vm)
    found, _ = scan(remote, roots, hashes=True)
    extra = sorted((p for p in found if p not in wanted and p not in roots),
                   key=lambda p: (-p.count("/"), p))
    deleted = 0
    if extra:
        done = remote.run(tree_command({"mode": "delete", "paths": list(roots)}),
                          stdin="".join(json.dumps(p) + "\n" for p in extra), timeout=3600)
        report = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() \
            else {"deleted": 0, "errors": [done.stderr.strip()[-300:]]}
        deleted = int(str(report.get("deleted", 0)))
        # what is left, by a scan without hashing: the files kept were hashed just now
        hashed = found
        found, _ = scan(remote, roots, hashes=False)
        found = {p: replace(e, sha256=hashed[p].sha256) if p in hashed else e
                 for p, e in found.items()}
    differences = manifest.compare(wanted, found)
    totals = manifest.totals(found.values(), roots)
    return TargetCheck(vm.name, source, snapshot_id, differences, totals, deleted), found


def parallel_until_text(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%d", time.gmtime(ts))


ProgressLine = Callable[[str], None]
