"""``hopnhat retire``: close a system at the end of its life (or, after a migration, its
source VMs at the end of the parallel run) and keep its records findable.

One ledger run (kind ``retire``), in timed steps; nothing is destroyed before every step
that keeps the data has passed:

1. **final backup** — the VMs' earlier snapshots tagged ``archived`` first (the job's own
   ``forget`` then keeps them), then the backup job on each data-bearing VM; each must
   succeed and its snapshot be in the repository (the backup gate's rule);
2. **check** — ``restic check --read-data`` of the whole repository, from the control host:
   every byte read; damage stops the retirement and is named;
3. **retention** — every snapshot of the retired VMs tagged ``archived``, the final ones
   ``final`` too: every ``forget`` hopnhat runs keeps them (``--keep-tag``), whatever the
   system's retention says, for the period recorded (``--keep``);
4. **manifest** — every entry of each final snapshot (path, type, size, mode, mtime) with
   the SHA-256 of each file's bytes, read from the repository (``restic dump``);
5. **catalogue** — the archive catalogue of the kept snapshots
   (:mod:`orchestrator.actions.archive.index`), its hash in the ledger;
6. **evidence** — JSON, its SHA-256 in the ledger, and the HTML record in vi/en;
7. **timers** — the backup timer, service and job config removed from each retired VM;
8. **destroy** — the retired VMs powered off and destroyed, adopted ones too (the one verb
   that may).

A run that fails after its evidence was written is taken up by the next one at step 7.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import IO, Any

from orchestrator.actions.archive import index as archive_index
from orchestrator.actions.backup.run import run_backups, select_clients
from orchestrator.actions.drill.result import StepRecord
from orchestrator.actions.drill.scratch import target as ssh_target
from orchestrator.actions.migrate import manifest
from orchestrator.actions.migrate.run import NoProgress, Progress
from orchestrator.actions.provision import destroy as provision_destroy
from orchestrator.actions.provision import plan as provision_plan
from orchestrator.actions.provision import vcenters as provision_vcenters
from orchestrator.actions.repositories import open_repository
from orchestrator.actions.retire.plan import RetirePlan
from orchestrator.actions.retire.result import PASSED, RetireResult
from orchestrator.actions.retire.state import KIND
from orchestrator.actions.snapshot_log import record_removed
from orchestrator.adapters.restic import Restic, Snapshot
from orchestrator.adapters.ssh import Remote
from orchestrator.adapters.vsphere import open_vcenters
from orchestrator.errors import EXIT_BAD_INPUT, HopnhatError, PlanError, ResticError
from orchestrator.estate.model import VM
from orchestrator.estate.secrets import Secrets
from orchestrator.hostjob.contract import JOB_CONFIG, JOB_UNIT
from orchestrator.ledger import Ledger, operator_name
from orchestrator.quoting import shell
from orchestrator.settings import Paths

FINAL, ARCHIVED = "final", "archived"
UNIT_DIR = "/etc/systemd/system"

ResticFactory = Callable[[Any], Restic]


class _StepFailed(Exception):
    def __init__(self, step: str, reason: str, exit_code: int = 1) -> None:
        super().__init__(reason)
        self.step = step
        self.reason = reason
        self.exit_code = exit_code


def timer_removal_command(code: str) -> str:
    """The shell line that stops and removes system ``code``'s backup timer on a host
    (systemd or not), its service and its job's config."""
    unit = JOB_UNIT.format(code=code)
    files = [f"{UNIT_DIR}/{unit}.timer", f"{UNIT_DIR}/{unit}.service",
             JOB_CONFIG.format(code=code)]
    timer = shell(f"{unit}.timer")
    return (f"if [ -d /run/systemd/system ]; then systemctl disable --now {timer} "
            ">/dev/null 2>&1 || true; fi; rm -f -- " + " ".join(map(shell, files))
            + "; if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; "
            "for f in " + " ".join(map(shell, files)) + "; do "
            "[ ! -e \"$f\" ] || { echo \"$f still there\"; exit 1; }; done")


@dataclass
class _Retirement:
    paths: Paths
    result: RetireResult
    ledger: Ledger
    progress: Progress
    mono0: float

    @contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        start = time.monotonic() - self.mono0
        detail: list[str] = []
        self.ledger.event(self.result.run_id, self.result.plan.system, "step", step=name,
                          phase="started")
        self.progress.step_started(name)
        ok = False
        try:
            yield detail
            ok = True
        except HopnhatError as exc:
            detail.append(str(exc))
            raise _StepFailed(name, f"{name}: {exc}",
                              EXIT_BAD_INPUT if exc.exit_code == EXIT_BAD_INPUT else 1
                              ) from None
        except _StepFailed as exc:
            detail.append(exc.reason)
            raise
        finally:
            record = StepRecord(name, start, time.monotonic() - self.mono0 - start, ok,
                                "; ".join(detail)[:4000])
            self.result.steps.append(record)
            self.ledger.event(self.result.run_id, self.result.plan.system, "step",
                              step=name, phase="finished", ok=ok,
                              seconds=round(record.seconds, 3), detail=record.detail)
            self.progress.step_finished(record)


def retire(paths: Paths, rplan: RetirePlan, *, ledger: Ledger, lang: str = "vi",
           secrets: Secrets | None = None, progress: Progress | None = None,
           make_restic: ResticFactory | None = None) -> RetireResult:
    """Carry out ``rplan`` (see the module's text). Out: :class:`RetireResult` (``verdict``
    passed or failed, ``exit_code`` 0, 1 or 2); never raises for a failed step."""
    from orchestrator.actions.retire import evidence

    secrets = secrets or Secrets(paths)
    settings = paths.estate.settings.verification
    make = make_restic or (lambda repo: Restic(
        repo, binary=paths.restic_binary, timeout=24 * 3600.0,
        lock_wait=settings.lock_wait.total_seconds()))
    result = RetireResult("", rplan, operator_name(), time.time())
    result.run_id = ledger.start(KIND, rplan.estate, {
        "system": rplan.system, "vms": list(rplan.vms), "keep": rplan.keep,
        "reason": rplan.reason, "resume": rplan.resume, "moved": rplan.moved})
    work = _Retirement(paths, result, ledger, progress or NoProgress(), time.monotonic())
    try:
        if rplan.resume:
            _take_up(ledger, rplan.resume, result)
        else:
            with open_repository(paths, rplan.system, secrets=secrets) as repo:
                restic = make(repo)
                _keep(work, restic)
            with work.step("evidence") as detail:
                evidence.write(paths, result, ledger, lang)
                detail.append(f"{result.evidence} (SHA-256 {result.sha256})")
        _close(work)
        result.verdict, result.exit_code = PASSED, 0
    except _StepFailed as exc:
        result.failed_step, result.reasons = exc.step, [exc.reason]
        result.exit_code = exc.exit_code
    finally:
        result.finished_at = time.time()
        ledger.finish(result.run_id, result.verdict, _summary(result))
    return result


def _summary(result: RetireResult) -> dict[str, Any]:
    plan = result.plan
    return {"vms": list(plan.vms), "hosts": list(plan.hosts), "finals": result.finals,
            "keep": plan.keep, "keep_until": plan.keep_until, "moved": plan.moved,
            "evidence": result.evidence, "evidence_sha256": result.sha256,
            "manifest_sha256": result.manifest_sha256,
            "catalogue_sha256": result.catalogue.get("sha256"),
            "destroyed": result.destroyed, "failed_step": result.failed_step or None,
            "reasons": result.reasons, "resumed_from": result.resumed_from}


def _take_up(ledger: Ledger, run_id: str, result: RetireResult) -> None:
    """What a failed run had kept (its evidence written): the steps left are timers and
    destroy."""
    earlier = next(r for r in ledger.runs(KIND, limit=100_000) if r.id == run_id)
    summary = earlier.summary or {}
    result.resumed_from = run_id
    result.finals = dict(summary.get("finals", {}))
    result.evidence = summary.get("evidence")
    result.sha256 = summary.get("evidence_sha256")
    result.manifest_sha256 = summary.get("manifest_sha256")
    result.catalogue = {"sha256": summary.get("catalogue_sha256")}


def _retag(work: _Retirement, restic: Restic, ids: list[str], add: list[str]) -> None:
    """``restic tag``: each snapshot is written again under a new ID and the old one
    deleted. The old IDs are recorded first as replaced by hopnhat, so that verify's
    ``vanished`` check does not take them for an attack."""
    system = work.result.plan.system
    backup = work.paths.estate.systems[system].backup
    assert backup is not None, "a system without a backup is never retired with one"
    record_removed(work.ledger, system, backup.repository_host, ids,
                   f"retire: tagged {', '.join(add)} (restic tag writes a new ID)",
                   work.result.run_id)
    restic.tag(ids, add)


def _keep(work: _Retirement, restic: Restic) -> None:
    """Steps 1–5: everything that keeps the data."""
    paths, result, plan = work.paths, work.result, work.result.plan
    with work.step("final backup") as detail:
        # the history first: the job's own forget (which runs after its backup) then keeps it
        history = [s.id for s in restic.snapshots() if s.hostname in plan.hosts
                   and ARCHIVED not in s.tags]
        if history:
            _retag(work, restic, history, [ARCHIVED])
        started = time.time()
        run = run_backups(paths, select_clients(paths.estate, [plan.system],
                                                hosts=list(plan.hosts)),
                          ledger=work.ledger, params={"system": plan.system,
                                                      "why": "retire: final backup"},
                          on_line=lambda host, line: work.progress.line(f"{host}: {line}"))
        result.backup_run = run.run_id
        bad = [h for h in run.hosts if not h.ok or not h.snapshot_id]
        if bad:
            raise HopnhatError("; ".join(
                f"{h.host}: {h.result}" + (f" ({h.error_message})" if h.error_message else
                                           "" if h.snapshot_id else " (no snapshot)")
                for h in bad) + "; nothing was destroyed")
        made = {h.host: str(h.snapshot_id) for h in run.hosts}
        snapshots = restic.snapshots()
        for host, ident in made.items():
            if not any(s.hostname == host and s.id.startswith(ident) for s in snapshots):
                raise HopnhatError(f"{host}: the final snapshot {ident[:8]} is not in "
                                   f"repository {restic.repo.display}")
        detail.append(", ".join(f"{h} → {i[:8]}" for h, i in sorted(made.items()))
                      + f" in {time.time() - started:.1f} s (backup run {run.run_id}; "
                      f"{len(history)} earlier snapshot(s) tagged {ARCHIVED} first)")
    with work.step("check") as detail:
        try:
            result.restic_version = ".".join(map(str, restic.version()))
            checked = restic.check("all", on_line=work.progress.line)
        except ResticError as exc:
            raise HopnhatError(f"repository {restic.repo.display} is damaged or unreadable:"
                               f" {exc}; nothing was destroyed") from None
        result.check = {"read_data": "all", "restic": result.restic_version,
                        "errors": 0, "notes": list(checked.notes)}
        detail.append(f"restic check --read-data: no errors ({restic.repo.display})")
    with work.step("retention") as detail:
        detail.append(_tag(work, restic, made))
    with work.step("manifest") as detail:
        detail.append(_manifest(work, restic))
    with work.step("catalogue") as detail:
        from orchestrator.actions.drill.evidence import evidence_dir
        from orchestrator.actions.migrate.evidence import MANIFEST

        built = archive_index.index(
            paths, work.ledger, plan.system, restic, hosts=plan.hosts,
            manifest=evidence_dir(paths, result.run_id) / MANIFEST,
            params={"retire_run": result.run_id})
        result.catalogue = built.as_dict()
        detail.append(f"{built.versions} file versions of {built.snapshots} snapshots, "
                      f"{built.bytes:,} bytes, SHA-256 {built.sha256[:16]}…")


def _tag(work: _Retirement, restic: Restic, made: dict[str, str]) -> str:
    """Tag the retired hosts' snapshots ``archived``, the final ones ``final`` too; find the
    final snapshots' new IDs."""
    result = work.result
    hosts = result.plan.hosts
    snapshots = [s for s in restic.snapshots() if s.hostname in hosts]
    finals = [s for s in snapshots if s.id.startswith(made[s.hostname])]
    history = [s for s in snapshots if s not in finals and ARCHIVED not in s.tags]
    if history:
        _retag(work, restic, [s.id for s in history], [ARCHIVED])
    todo = [s for s in finals if FINAL not in s.tags or ARCHIVED not in s.tags]
    if todo:
        _retag(work, restic, [s.id for s in todo], [FINAL, ARCHIVED])
    after = [s for s in restic.snapshots() if s.hostname in hosts]
    result.finals = {}
    for host in hosts:
        mine = [s for s in after if s.hostname == host and FINAL in s.tags
                and (s.id.startswith(made[host]) or (s.original or "").startswith(made[host]))]
        if len(mine) != 1:
            raise HopnhatError(f"{host}: after tagging, {len(mine)} snapshots are its final "
                               f"one ({made[host][:8]}); expected one")
        result.finals[host] = mine[0].id
    untagged = [s.short_id for s in after if ARCHIVED not in s.tags]
    if untagged:
        raise HopnhatError(f"snapshots {', '.join(untagged)} are not tagged {ARCHIVED}")
    result.kept = [_kept(s) for s in sorted(after, key=lambda s: s.time)]
    return (f"{len(after)} snapshot(s) tagged {ARCHIVED} ({len(history)} newly), "
            f"{len(result.finals)} {FINAL}: every forget keeps them (until "
            f"{time.strftime('%Y-%m-%d', time.gmtime(result.plan.keep_until))} recorded)")


def _kept(s: Snapshot) -> dict[str, Any]:
    return {"id": s.id, "time": s.time.isoformat().replace("+00:00", "Z"),
            "host": s.hostname, "tags": list(s.tags), "paths": list(s.paths)}


def _manifest(work: _Retirement, restic: Restic) -> str:
    """Every entry of each final snapshot with its bytes' SHA-256 (read from the
    repository); the manifest stored with the evidence."""
    from orchestrator.actions.migrate.evidence import store_manifest

    result = work.result
    manifests: dict[str, dict[str, manifest.Entry]] = {}
    for host, ident in sorted(result.finals.items()):
        entries = {n.path: manifest.from_node(n) for n in restic.ls(ident)}
        sums: dict[str, str] = {}

        def each(member: Any, data: IO[bytes] | None, sums: dict[str, str] = sums) -> None:
            if data is None:
                return
            digest = hashlib.sha256()
            for chunk in iter(lambda: data.read(1 << 20), b""):
                digest.update(chunk)
            sums["/" + member.name.rstrip("/")] = digest.hexdigest()
        restic.dump_tree(ident, each)
        files = [p for p, e in entries.items() if e.type == "f"]
        missing = [p for p in files if p not in sums]
        if missing:
            raise HopnhatError(f"{host}: {len(missing)} file(s) of snapshot {ident[:8]} not "
                               f"read back: {', '.join(missing[:5])}")
        manifests[host] = {p: replace(e, sha256=sums.get(p)) if e.type == "f" else e
                           for p, e in entries.items()}
        roots = sorted({p for s in result.kept if s["id"] == ident for p in s["paths"]})
        result.manifest_totals[host] = manifest.totals(manifests[host].values(), roots)
    _, result.manifest_sha256 = store_manifest(work.paths, result.run_id, manifests)
    count = sum(len(m) for m in manifests.values())
    return f"{count} entries of {len(manifests)} final snapshot(s), SHA-256 " \
           f"{result.manifest_sha256[:16]}…"


def _close(work: _Retirement) -> None:
    """Steps 7–8: the timers, then the VMs."""
    paths, result, plan = work.paths, work.result, work.result.plan
    estate = paths.estate
    vms = [vm for vm in estate.vms if vm.name in plan.vms]
    with work.step("timers") as detail:
        for vm in vms:
            if not vm.data:
                continue
            remote = Remote(ssh_target(paths, vm), estate.settings.ssh.alive)
            try:
                done = remote.run(timer_removal_command(plan.system), timeout=120)
            except HopnhatError as exc:
                if vm.name in _gone(paths, plan):
                    detail.append(f"{vm.name}: already gone")
                    continue
                raise HopnhatError(f"{vm.name}: {exc}") from None
            finally:
                remote.close()
            if done.returncode != 0:
                raise HopnhatError(f"{vm.name}: the backup timer could not be removed: "
                                   f"{(done.stdout + done.stderr).strip()[-500:]}")
            result.timers.append(vm.name)
        detail.append(", ".join(result.timers) or "no data-bearing VM")
    with work.step("destroy") as detail:
        result.destroyed = _destroy(work)
        detail.append(", ".join(result.destroyed) or "nothing left to destroy")


def _located(paths: Paths, vms: list[VM], facts: dict[str, Any]) -> dict[str, list[Any]]:
    """Each retired VM → what vCenter has of it: an adopted one found by its UUID or vCenter
    name (as adoption found it), a built one by its name and this estate's mark."""
    estate = paths.estate
    out: dict[str, list[Any]] = {}
    for vm in vms:
        inv = facts[provision_vcenters.vcenter_of(estate, vm)]
        if vm.existing is not None:
            out[vm.name] = provision_plan.locate(vm, inv)[0]
        else:
            out[vm.name] = [f for f in inv.vms_named(vm.name) if f.owner == estate.id]
    return out


def _gone(paths: Paths, plan: RetirePlan) -> set[str]:
    """The retired VMs vCenter no longer has."""
    vms = [vm for vm in paths.estate.vms if vm.name in plan.vms]
    with open_vcenters(provision_vcenters.endpoints(paths, sorted({vm.site for vm in vms}))
                       ) as vcenters:
        found = _located(paths, vms, provision_vcenters.read_facts(vcenters, []))
    return {name for name, there in found.items() if not there}


def _destroy(work: _Retirement) -> list[str]:
    """Destroy the retired VMs that vCenter still has; each must be gone afterwards."""
    paths, plan = work.paths, work.result.plan
    vms = [vm for vm in paths.estate.vms if vm.name in plan.vms]
    with open_vcenters(provision_vcenters.endpoints(paths, sorted({vm.site for vm in vms}))
                       ) as vcenters:
        facts = provision_vcenters.read_facts(vcenters, [])
        located = _located(paths, vms, facts)
        wanted = {(f.name, f.datacenter) for there in located.values() for f in there}
        dplan = provision_destroy.plan_destroy(paths.estate, plan.system, facts, vms=vms,
                                               adopted_too=True)
        mine = tuple(a for a in dplan.actions if (a.name, a.datacenter) in wanted)
        strangers = wanted - {(a.name, a.datacenter) for a in mine}
        if strangers:
            raise PlanError(", ".join(f"{n} ({dc})" for n, dc in sorted(strangers))
                            + f": not marked as system {plan.system}'s VM of estate "
                            f"{paths.estate.id}; not destroyed (the data is kept)")
        done = None
        if mine:
            done = provision_destroy.destroy(replace(dplan, actions=mine, adopted=()),
                                             vcenters, ledger=work.ledger,
                                             concurrency=max(1, len(mine)))
    if done is not None and done.failed:
        raise PlanError("; ".join(f"{o.vm}: {o.error}" for o in done.failed)
                        + " (run retire again to finish: the data is kept)")
    estate_name = {f.name: name for name, there in located.items() for f in there}
    return [estate_name.get(o.vm, o.vm) for o in done.outcomes if o.ok] if done else []
