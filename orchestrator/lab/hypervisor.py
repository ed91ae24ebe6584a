"""The lab's hypervisor: makes vcsim's VMs real.

A daemon that follows every vCenter of the lab (one vcsim per vCenter, one thread and one
session each) through the PropertyCollector (WaitForUpdatesEx over a ContainerView of VMs)
and keeps one real sshd guest running for every powered-on VM that has a guest IP (from its
customization): started when the VM powers on, stopped when it powers off, removed with its
disk when the VM is destroyed. A data-bearing VM of the estate (or a legacy VM with
``data``) gets its synthetic application data just before its guest first comes up; one
whose system's backup names PostgreSQL or MariaDB databases runs those engines, created and
seeded at its guest's first boot (:mod:`orchestrator.lab.guest_engines`).

A guest is keyed by its VM's name, or, for a legacy VM (one lab.yml puts in vCenter before
hopnhat, whose ``config.annotation`` is ``hopnhat-lab-guest: <key>``), by that key
(``qlvb-db-01.dc-quangnam``): names repeat between the provinces and hopnhat's own VMs. A
legacy guest gets only the operator key (the province team's own) in its authorized_keys
(which, as on a VM's disk, keeps what was added since across restarts, as its hostname does)
and its host key is not written into hopnhat's known_hosts; when lab.yml asks, its host key
fingerprint is published into its VM's extraConfig once its sshd is up.

Guests are reconciled only once every vCenter has been read in full (a guest of a vCenter
not read yet is not mistaken for a destroyed VM); a vCenter that goes away keeps its last
known VMs (and their guests) until it answers again.

Run as ``python -m orchestrator.lab.hypervisor <config.json>``; ``lab up`` starts it and
records its PID.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyVmomi import vim, vmodl

from orchestrator.adapters import vsphere
from orchestrator.errors import HopnhatError
from orchestrator.lab import data, guests
from orchestrator.lab.config import FINGERPRINT_KEY, GUEST_ANNOTATION
from orchestrator.lab.processes import ProcessTable

log = logging.getLogger("hopnhat.lab.hypervisor")

VM_PATHS = ("name", "runtime.powerState", "guest.ipAddress", "guest.hostName", "config.template",
            "config.annotation")
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
#: guests started at once by one reconciliation
PARALLEL_STARTS = 4


def guest_key_of(name: str, annotation: str | None) -> tuple[str, bool]:
    """(guest key, legacy?) of a VM: the key its annotation names after
    ``hopnhat-lab-guest: `` (a legacy VM), else its name."""
    for line in (annotation or "").splitlines():
        if line.startswith(GUEST_ANNOTATION) and line[len(GUEST_ANNOTATION):].strip():
            return line[len(GUEST_ANNOTATION):].strip(), True
    return name, False


@dataclass(frozen=True)
class VMState:
    name: str
    powered_on: bool
    ip: str | None
    hostname: str | None
    template: bool
    annotation: str | None = None

    @property
    def guest_key(self) -> str:
        """What names its guest: the annotation's key for a legacy VM, else its name."""
        return guest_key_of(self.name, self.annotation)[0]

    @property
    def legacy(self) -> bool:
        return guest_key_of(self.name, self.annotation)[1]


def desired_guests(vms: Mapping[Any, VMState]) -> dict[str, VMState]:
    """The guests that should run, by guest key: powered-on, non-template VMs with a guest
    IP and a key usable as a folder name."""
    return {vm.guest_key: vm for vm in vms.values()
            if vm.powered_on and vm.ip and not vm.template and _SAFE.match(vm.guest_key)}


class Hypervisor:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.lab_dir = Path(config["lab_dir"])
        self.table = ProcessTable(self.lab_dir)
        self.known_hosts = Path(config["known_hosts"])
        self.authorized_keys: list[str] = list(config["authorized_keys"])
        # the province team's own key: the only one a legacy guest accepts
        self.operator_keys: list[str] = list(config.get("operator_keys", []))
        # legacy guest key → {"publish_fingerprint": bool, "data": a data spec or None}
        self.legacy: dict[str, dict[str, Any]] = config.get("legacy", {})
        self.data: dict[str, dict[str, Any]] = config.get("data", {})
        # VM name → the database engines its guest runs (guest_engines.EngineSpec dicts)
        self.databases: dict[str, list[dict[str, Any]]] = config.get("databases", {})
        # guests the lab runs that are not VMs (the repository hosts): never ours to touch
        self.unmanaged: set[str] = set(config.get("unmanaged", []))
        self.urls: list[str] = [vc["url"] for vc in config["vcenters"]]
        self.vms: dict[tuple[str, str], VMState] = {}  # by (vCenter URL, moref id)
        self.read: set[str] = set()  # the vCenters read in full at least once
        self.lock = threading.Lock()  # one reconciliation at a time
        self.running = True
        self.sessions: dict[str, Any] = {}  # URL → the ServiceInstance following it
        self.published: set[tuple[str, str]] = set()  # (URL, moref id): fingerprint written

    # ---- reconciliation ------------------------------------------------------------
    def reconcile(self) -> None:
        want = desired_guests(self.vms)
        have = {r.name.removeprefix("guest-"): r for r in self.table.all()
                if r.kind == "guest" and r.name.removeprefix("guest-") not in self.unmanaged}
        known_names = {vm.guest_key for vm in self.vms.values()}
        for name, record in have.items():
            vm = want.get(name)
            if name not in known_names:
                log.info("VM %s is gone: removing its guest", name)
                guests.destroy_guest(self.lab_dir, self.table, name)
            elif vm is None or record.address.split(":")[0] != vm.ip:
                log.info("stopping guest %s", name)
                guests.stop_guest(self.table, name)
        starting = []
        for name, vm in want.items():
            if self.table.running(f"guest-{name}") is not None:
                continue
            if vm.legacy and not self.operator_keys:
                log.error("legacy guest %s not started: no operator key in the config", name)
                continue
            starting.append((name, vm))
        # side by side: a guest whose engines are created and loaded at its first boot
        # (seconds) does not hold back the others
        with ThreadPoolExecutor(max_workers=PARALLEL_STARTS, thread_name_prefix="start") as pool:
            for future in [pool.submit(self._start, name, vm) for name, vm in starting]:
                future.result()
        self._remove_orphans(known_names)
        self._publish_fingerprints()

    def _start(self, name: str, vm: VMState) -> None:
        """Start the guest of ``vm`` (its data seeded first); a failure is logged."""
        assert vm.ip is not None
        log.info("starting %sguest %s at %s", "legacy " if vm.legacy else "", name, vm.ip)
        try:
            # its data is on its disk before it boots: there once its guest answers
            self._seed(name)
            if vm.legacy:  # the province team's key only; its host key is not pinned
                guests.start_guest(self.lab_dir, self.table, name, vm.hostname or vm.name,
                                   vm.ip, self.operator_keys, None, legacy=True,
                                   on_ready=functools.partial(
                                       self._publish_fingerprints, name))
            else:
                guests.start_guest(self.lab_dir, self.table, name, vm.hostname or name,
                                   vm.ip, self.authorized_keys, self.known_hosts,
                                   engines=self.databases.get(name))
        except HopnhatError as exc:
            log.error("guest %s did not start: %s", name, exc)

    def _publish_fingerprints(self, starting: str | None = None) -> None:
        """Write each running legacy guest's host key fingerprint into its VM's extraConfig
        (:data:`FINGERPRINT_KEY`) when lab.yml asks, once per VM and session (``starting``:
        only that guest's, whose sshd just came up and is not recorded yet). A failure is
        logged and tried again at the next reconciliation."""
        for (url, moid), vm in self.vms.items():
            key = vm.guest_key
            if not vm.legacy or (url, moid) in self.published \
                    or not self.legacy.get(key, {}).get("publish_fingerprint"):
                continue
            if key != starting and (starting is not None
                                    or self.table.running(f"guest-{key}") is None):
                continue
            si = self.sessions.get(url)
            if si is None:
                continue
            try:
                value = guests.host_key_fingerprint(self.lab_dir, key)
                publish_fingerprint(si, moid, value)
            except Exception as exc:  # whatever went wrong, the guest runs on
                log.warning("fingerprint of %s not published (retried later): %s", key, exc)
                continue
            self.published.add((url, moid))
            log.info("published the host key fingerprint of %s: %s", key, value)

    def _seed(self, name: str) -> None:
        spec = self.data.get(name) or self.legacy.get(name, {}).get("data")
        marker = self.lab_dir / "guests" / name / ".seeded"
        if spec is None or marker.exists():
            return
        dest = guests.guest_srv(self.lab_dir, name) / spec["code"]
        summary = data.generate(dest, seed=spec["seed"], size_mb=spec["size_mb"],
                                files=spec["files"], day=0, change_rate=spec["change_rate"])
        # where the application's pre-backup commands put a consistent database copy
        (dest / "dump").mkdir(exist_ok=True)
        marker.write_text(json.dumps({"day": 0, "files": summary.files}))
        log.info("seeded %s with %d files", name, summary.files)

    def _remove_orphans(self, known_names: set[str]) -> None:
        """A guest disk whose VM no longer exists (destroyed while we were away)."""
        root = self.lab_dir / "guests"
        if not root.is_dir():
            return
        for folder in root.iterdir():
            if folder.is_dir() and folder.name not in known_names \
                    and folder.name not in self.unmanaged \
                    and self.table.running(f"guest-{folder.name}") is None:
                log.info("removing the disk of destroyed VM %s", folder.name)
                guests.destroy_guest(self.lab_dir, self.table, folder.name)

    # ---- following vCenter -----------------------------------------------------------
    def _apply(self, url: str, update_set: Any) -> None:
        for filter_update in update_set.filterSet or []:
            for obj in filter_update.objectSet or []:
                key = (url, obj.obj._moId)
                if obj.kind == "leave":
                    self.vms.pop(key, None)
                    continue
                current = self.vms.get(key)
                props: dict[str, Any] = {} if current is None else {
                    "name": current.name, "runtime.powerState": "poweredOn"
                    if current.powered_on else "poweredOff", "guest.ipAddress": current.ip,
                    "guest.hostName": current.hostname, "config.template": current.template,
                    "config.annotation": current.annotation}
                for change in obj.changeSet or []:
                    props[change.name] = None if change.op == "remove" else change.val
                self.vms[key] = VMState(
                    name=str(props.get("name") or key[1]),
                    powered_on=str(props.get("runtime.powerState")) == "poweredOn",
                    ip=props.get("guest.ipAddress") or None,
                    hostname=props.get("guest.hostName") or None,
                    template=bool(props.get("config.template")),
                    annotation=props.get("config.annotation") or None,
                )

    def updated(self, url: str, update_set: Any, full: bool = False) -> None:
        """Take an update of vCenter ``url`` (``full``: the first of a session, the whole
        of its VMs, which replaces what was known of it: a restarted vCenter may have lost
        VMs); reconcile once every vCenter was read."""
        with self.lock:
            if full:
                for key in [k for k in self.vms if k[0] == url]:
                    del self.vms[key]
                # a restarted vCenter's VMs lack what was published in its former VMs
                self.published = {k for k in self.published if k[0] != url}
            if update_set is not None:
                self._apply(url, update_set)
            self.read.add(url)
            if self.read.issuperset(self.urls):
                self.reconcile()

    def follow(self, url: str, si: vim.ServiceInstance) -> None:
        content: Any = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(
            content.rootFolder, [vim.VirtualMachine], True)
        collector = content.propertyCollector
        pfilter = collector.CreateFilter(vsphere._filter_spec(view, vim.VirtualMachine, VM_PATHS),
                                         partialUpdates=True)
        version = ""
        self.sessions[url] = si
        try:
            while self.running:
                update = collector.WaitForUpdatesEx(
                    version, vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=5))
                if update is None:
                    if not version:  # nothing at all to report: a vCenter without VMs
                        self.updated(url, None, full=True)
                    continue
                self.updated(url, update, full=not version)
                version = update.version
        finally:
            self.sessions.pop(url, None)
            pfilter.Destroy()
            view.Destroy()


def publish_fingerprint(si: Any, moid: str, value: str) -> None:
    """ReconfigVM_Task of VM ``moid`` setting extraConfig :data:`FINGERPRINT_KEY` to
    ``value``. Raises HopnhatError when the task fails, vmodl.MethodFault when vCenter
    refuses it."""
    vm = vim.VirtualMachine(moid, si._stub)
    spec = vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(key=FINGERPRINT_KEY,
                                                                 value=value)])
    task = vm.ReconfigVM_Task(spec=spec)
    deadline = time.monotonic() + 60
    while (state := str(task.info.state)) not in ("success", "error"):
        if time.monotonic() > deadline:
            raise HopnhatError(f"reconfiguring {moid}: the task did not finish in 60 s")
        time.sleep(0.1)  # the lab's vCenter answers a task once done: rarely reached
    if state == "error":
        raise HopnhatError(f"reconfiguring {moid}: {task.info.error}")


def _endpoint(vcenter: dict[str, str]) -> vsphere.Endpoint:
    credentials = json.loads(Path(vcenter["credentials_file"]).read_text())
    return vsphere.Endpoint(url=vcenter["url"], username=credentials["username"],
                            password=credentials["password"],
                            ca_bundle=Path(vcenter["ca_bundle"]))


def _follow_forever(hypervisor: Hypervisor, vcenter: dict[str, str]) -> None:
    """Follow one vCenter until the hypervisor stops, reconnecting after a loss."""
    url = vcenter["url"]
    while hypervisor.running:
        try:
            with vsphere.session(_endpoint(vcenter)) as si:
                log.info("following %s", url)
                hypervisor.follow(url, si)
        except (HopnhatError, OSError, ValueError, vmodl.MethodFault) as exc:
            # vCenter gone (a test stopped it) or restarting: keep the guests, try again
            log.warning("lost vCenter %s: %s; retrying", url, exc)
        except Exception:  # a thread that died would leave this vCenter unfollowed
            log.exception("following %s failed; retrying", url)
        end = time.monotonic() + 2
        while hypervisor.running and time.monotonic() < end:
            time.sleep(0.1)


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[1]).read_text())
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    hypervisor = Hypervisor(config)

    def stop(_signum: int, _frame: object) -> None:
        hypervisor.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threads = [threading.Thread(target=_follow_forever, args=(hypervisor, vcenter),
                                name=f"follow-{index}", daemon=True)
               for index, vcenter in enumerate(config["vcenters"])]
    for thread in threads:
        thread.start()
    while hypervisor.running:  # signals reach the main thread only
        time.sleep(0.2)
    for thread in threads:  # each sees `running` within one WaitForUpdatesEx (5 s)
        thread.join(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
