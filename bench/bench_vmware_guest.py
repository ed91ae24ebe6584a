"""Issue 3, the other side of benchmark 2: community.vmware's ``vmware_guest`` measured here.

The issue compares ``hopnhat apply`` with vmware_guest cloning 20 VMs (500 ms clone delay,
forks=8) and with its no-change rerun. ``bench_apply.py`` prints the issue's figures for
vmware_guest; this script measures them on this machine, against the same kind of private
vcsim (``benchlab.bench_lab``: a generated estate, no sshd guests), so the two can be put
side by side.

1. A venv of its own, outside the project's (default ``/var/tmp/hopnhat-bench-ansible``,
   outside the work tree; ``--venv`` to choose), with the ``ansible`` package (which bundles
   community.vmware), pyVmomi and requests installed by pip; reused (whatever its
   interpreter: delete it to start over) and pip not run again while its stamp
   ``hopnhat-bench.json`` lists the same requirements. Ansible 13 and later need Python >=
   3.12: for a new venv a python3.12+ is looked for (PATH, then pyenv's versions), else
   this interpreter is used (pip then picks Ansible 12).
   No ansible, or no community.vmware.vmware_guest: said, the issue's figures printed, exit 0.
2. A private vcsim with one system of ``--vms`` VMs, CloneVM_Task delayed by
   ``--clone-delay-ms``; a playbook (one inventory host per VM, the task delegated to
   localhost, as vmware_guest is used) that clones each VM from the site's template with
   hardware, disk, network with a fixed IP, customization (LinuxPrep host name) and
   ``state: poweredon``. Credentials through VMWARE_HOST / VMWARE_PORT / VMWARE_USER /
   VMWARE_PASSWORD in the environment (never argv); TLS verified against the lab's CA bundle
   (``validate_certs: true``; the module loads the default verify paths, so SSL_CERT_FILE
   names the bundle).
3. Times the whole ``ansible-playbook`` process, first run (creates the VMs) and no-change
   rerun, median of ``--rounds`` (the VMs are destroyed, untimed, between rounds), with
   vcsim's SOAP call counts; with ``--hopnhat-apply/--hopnhat-rerun`` the ratios
   vmware_guest / hopnhat.

vcsim 0.24 notes (printed too): a clone ignores the customization in its spec (the spec is
sent all the same), so no guest IP is ever reported and ``wait_for_ip_address`` would wait
its whole timeout: it is left out unless ``--wait-for-ip``, which has vmware_guest set the
IP through vcsim's ``SET.guest.ipAddress`` extraConfig (``advanced_settings``: one more
ReconfigVM_Task per VM) so that the wait ends at once.

Asserts nothing. ``python bench/bench_vmware_guest.py [--vms 20 --forks 8 --clone-delay-ms
500 --rounds 1] [--hopnhat-apply S --hopnhat-rerun S]``.
"""

from __future__ import annotations

import argparse
import glob
import ipaddress
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from benchlab import BenchLab, bench_lab

from orchestrator import process
from orchestrator.errors import CommandError
from orchestrator.estate.model import Site

# the measurements of community.vmware.vmware_guest (Ansible 12); same as bench_apply
VMWARE_GUEST_20_FORKS8 = 10.9
VMWARE_GUEST_RERUN = (9.0, 11.0)

DEFAULT_VENV = Path("/var/tmp/hopnhat-bench-ansible")
REQUIREMENTS = ["ansible>=12,<15", "pyvmomi>=8.0.3,<10", "requests>=2.28,<3"]
STAMP = "hopnhat-bench.json"
MODULE = "community.vmware.vmware_guest"
SYSTEM = "vmguest"
INSTALL_TIMEOUT = 1800.0
RUN_TIMEOUT = 3600.0
_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                    re.MULTILINE)


def reference() -> str:
    return (f"the issue's figures for vmware_guest: 20 VMs at forks=8 {VMWARE_GUEST_20_FORKS8} s;"
            f" no-change rerun {VMWARE_GUEST_RERUN[0]:.0f}-{VMWARE_GUEST_RERUN[1]:.0f} s")


def unavailable(why: str) -> int:
    print(f"vmware_guest NOT MEASURED: {why}")
    print(f"   {reference()}")
    return 0


# ------------------------------------------------------------------ the ansible venv


def _version(python: str) -> tuple[int, int] | None:
    """(major, minor) of ``python`` if it runs and has venv + ensurepip, else None."""
    try:
        done = process.run([python, "-c", "import sys, venv, ensurepip; "
                            "print(*sys.version_info[:2])"], timeout=60, inherit_env=False)
    except CommandError:
        return None
    if not done.ok:
        return None
    major, minor = done.stdout.split()
    return int(major), int(minor)


def find_python(explicit: str | None) -> tuple[str, tuple[int, int]] | None:
    """The interpreter for a new venv: ``explicit``, else the newest python3.12+ on PATH or
    among pyenv's versions, else this one (Ansible 12 still runs on 3.11)."""
    if explicit:
        found = _version(explicit)
        return (explicit, found) if found else None
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates: list[str] = []
    for minor in (14, 13, 12):
        on_path = shutil.which(f"python3.{minor}")
        if on_path and "shims" not in Path(on_path).parts:  # a pyenv shim may not run
            candidates.append(on_path)
        candidates += sorted(glob.glob(str(pyenv / "versions" / f"3.{minor}*" / "bin"
                                           / f"python3.{minor}")), reverse=True)
    candidates.append(getattr(sys, "_base_executable", sys.executable))
    for python in candidates:
        found = _version(python)
        if found and found >= (3, 11):
            return python, found
    return None


def ensure_venv(venv: Path, python: str) -> str | None:
    """Make ``venv`` with ``python`` (or reuse it, whatever its interpreter) and install
    REQUIREMENTS unless its stamp says they are. Out: None when ready, else why not."""
    stamp = venv / STAMP
    wanted = {"requirements": REQUIREMENTS}
    if stamp.is_file() and (venv / "bin" / "ansible-playbook").is_file():
        try:
            if json.loads(stamp.read_text()) == wanted:
                return None
        except ValueError:
            pass
    if venv.exists() and not (venv / "pyvenv.cfg").is_file() and any(venv.iterdir()):
        return f"{venv} exists and is not a venv: choose another --venv"
    made = not (venv / "pyvenv.cfg").is_file()
    print(f"installing {' '.join(REQUIREMENTS)} into {'a new venv ' if made else ''}{venv}"
          f"{f' (with {python})' if made else ''} ...", flush=True)
    start = time.perf_counter()
    try:
        if made:
            done = process.run([python, "-m", "venv", str(venv)], timeout=300)
            if not done.ok:
                return f"python -m venv failed: {(done.stderr or done.stdout).strip()[-800:]}"
        done = process.run([str(venv / "bin" / "python"), "-m", "pip", "install",
                            "--disable-pip-version-check", "--quiet", *REQUIREMENTS],
                           timeout=INSTALL_TIMEOUT)
    except CommandError as exc:
        return f"pip install failed: {exc}"
    if not done.ok:
        tail = "\n".join(line for line in (done.stderr + done.stdout).splitlines()
                         if not line.startswith("WARNING: Location"))[-1500:]
        return f"pip install failed (exit {done.returncode}):\n{tail}"
    stamp.write_text(json.dumps(wanted) + "\n")
    print(f"   installed in {time.perf_counter() - start:.0f} s", flush=True)
    return None


def versions(venv: Path, env: dict[str, str]) -> dict[str, str]:
    """ansible, ansible-core, pyVmomi and community.vmware versions in ``venv``."""
    code = (
        "import json, importlib.metadata as md, pathlib, sys\n"
        "out = {p: md.version(p) for p in ('ansible', 'ansible-core', 'pyvmomi')}\n"
        "try:\n"
        "    import ansible_collections.community.vmware as m\n"
        "    man = pathlib.Path(list(m.__path__)[0]) / 'MANIFEST.json'\n"
        "    out['community.vmware'] = json.loads(man.read_text())['collection_info']['version']\n"
        "except Exception as exc:\n"
        "    out['community.vmware'] = 'missing (%s)' % exc\n"
        "out['python'] = '%d.%d.%d' % sys.version_info[:3]\n"
        "print(json.dumps(out))\n")
    done = process.run([str(venv / "bin" / "python"), "-c", code], env=env, timeout=120,
                       inherit_env=False)
    if not done.ok:
        return {}
    found: dict[str, str] = json.loads(done.stdout)
    return found


# ------------------------------------------------------------------ the playbook


@dataclass
class Run:
    seconds: float
    ok: bool
    hosts: int = 0
    changed: int = 0
    failed: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    tail: str = ""

    @property
    def tasks(self) -> dict[str, int]:
        return {k: v for k, v in sorted(self.calls.items()) if k.endswith("_Task")}

    def soap(self) -> str:
        if not self.calls:
            return "SOAP calls n/a"
        tasks = ", ".join(f"{k} {v}" for k, v in self.tasks.items()) or "none"
        return f"SOAP calls {sum(self.calls.values())}, tasks: {tasks}"


def inventory(lab: BenchLab, wait_for_ip: bool) -> dict[str, Any]:
    """One host per VM of the system, with what the task needs (the hopnhat estate's)."""
    hosts: dict[str, Any] = {}
    for vm in lab.estate.vms:
        if vm.system != SYSTEM:
            continue
        hosts[vm.name] = {
            "vm_ip": str(vm.ip),
            "vm_netmask": str(ipaddress.IPv4Network(f"0.0.0.0/{vm.prefix_length}").netmask),
            "vm_gateway": str(vm.gateway), "vm_dns": [str(d) for d in vm.dns],
            "vm_cpu": vm.cpu, "vm_memory_mb": vm.memory_mb, "vm_disks_gb": vm.disks_gb,
            "vm_datacenter": vm.datacenter, "vm_cluster": vm.cluster,
            "vm_datastore": vm.datastore, "vm_template": vm.template,
            "vm_port_group": vm.port_group,
            "vm_advanced_settings": ([{"key": "SET.guest.ipAddress", "value": str(vm.ip)}]
                                     if wait_for_ip else []),
        }
    return {"all": {"hosts": hosts}}


def playbook(state: str, customization: bool, wait_for_ip: bool) -> list[dict[str, Any]]:
    """vmware_guest for each inventory host, delegated to localhost (``state: absent``:
    the untimed clean-up between rounds)."""
    args: dict[str, Any] = {
        "name": "{{ inventory_hostname }}", "datacenter": "{{ vm_datacenter }}",
        "folder": "/{{ vm_datacenter }}/vm", "validate_certs": True,
    }
    if state == "absent":
        args.update(state="absent", force=True)
    else:
        network: dict[str, Any] = {"name": "{{ vm_port_group }}", "device_type": "vmxnet3"}
        if customization:
            network.update(type="static", ip="{{ vm_ip }}", netmask="{{ vm_netmask }}",
                           gateway="{{ vm_gateway }}", dns_servers="{{ vm_dns }}")
        args.update(
            template="/{{ vm_datacenter }}/vm/{{ vm_template }}", cluster="{{ vm_cluster }}",
            datastore="{{ vm_datastore }}", state="poweredon",
            hardware={"num_cpus": "{{ vm_cpu }}", "memory_mb": "{{ vm_memory_mb }}"},
            disk=[{"size_gb": "{{ vm_disks_gb[0] }}", "datastore": "{{ vm_datastore }}"}],
            networks=[network], wait_for_ip_address=wait_for_ip,
            wait_for_ip_address_timeout=60, advanced_settings="{{ vm_advanced_settings }}")
        if customization:
            args["customization"] = {"hostname": "{{ inventory_hostname }}",
                                     "domain": "localdomain", "dns_servers": "{{ vm_dns }}"}
    return [{"name": f"vmware_guest {state}", "hosts": "all", "gather_facts": False,
             "tasks": [{"name": f"VM {state}", MODULE: args, "delegate_to": "localhost"}]}]


class Ansible:
    """ansible-playbook of ``venv`` in ``work`` (its own config, inventory, playbooks)."""

    def __init__(self, venv: Path, work: Path, forks: int) -> None:
        self.venv, self.work = venv, work
        work.mkdir(parents=True, exist_ok=True)
        (work / "ansible.cfg").write_text(
            "[defaults]\n"
            f"forks = {forks}\n"
            "inventory = inventory.yml\n"
            "retry_files_enabled = False\n"
            "host_key_checking = False\n"
            "nocolor = True\n"
            "interpreter_python = auto_silent\n")
        # the venv's bundled collections only, nothing from ~/.ansible; no user files touched
        self.env = {"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
                    "HOME": str(work), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                    "ANSIBLE_CONFIG": str(work / "ansible.cfg"),
                    "ANSIBLE_HOME": str(work / "ansible-home"),
                    "ANSIBLE_COLLECTIONS_PATH": str(work / "collections"),
                    "ANSIBLE_LOCAL_TEMP": str(work / "tmp")}

    def connect(self, lab: BenchLab) -> None:
        """The lab's vCenter for the module: environment only, never argv or a file."""
        ep = lab.endpoint()
        url = urlsplit(ep.url)
        self.env.update(VMWARE_HOST=url.hostname or "", VMWARE_PORT=str(url.port or 443),
                        VMWARE_USER=ep.username, VMWARE_PASSWORD=ep.password)
        if ep.ca_bundle:
            self.env["SSL_CERT_FILE"] = str(ep.ca_bundle)

    def has_module(self) -> str | None:
        """None when ansible-doc knows MODULE, else why not."""
        try:
            done = process.run([str(self.venv / "bin" / "ansible-doc"), MODULE], env=self.env,
                               cwd=self.work, timeout=300, inherit_env=False)
        except CommandError as exc:
            return str(exc)
        if done.ok and MODULE in done.stdout:
            return None
        return f"`ansible-doc {MODULE}` failed: {(done.stderr or done.stdout).strip()[-800:]}"

    def write(self, name: str, data: Any) -> Path:
        path = self.work / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def run(self, book: Path, lab: BenchLab) -> Run:
        lab.reset_counts()
        start = time.perf_counter()
        done = process.run([str(self.venv / "bin" / "ansible-playbook"), book.name],
                           env=self.env, cwd=self.work, timeout=RUN_TIMEOUT, inherit_env=False)
        seconds = time.perf_counter() - start
        recap = _RECAP.findall(done.stdout)
        return Run(seconds=seconds, ok=done.ok, hosts=len(recap),
                   changed=sum(int(r[2]) > 0 for r in recap),
                   failed=sum(int(r[3]) + int(r[4]) > 0 for r in recap), calls=lab.counts(),
                   tail="" if done.ok else (done.stdout + done.stderr).strip()[-3000:])


# ------------------------------------------------------------------ main


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--vms", type=int, default=20)
    p.add_argument("--forks", type=int, default=8)
    p.add_argument("--clone-delay-ms", type=int, default=500)
    p.add_argument("--rounds", type=int, default=1,
                   help="median of this many first runs and reruns (VMs destroyed between)")
    p.add_argument("--hopnhat-apply", type=float, metavar="SECONDS",
                   help="hopnhat's whole-process apply time, for the ratio")
    p.add_argument("--hopnhat-rerun", type=float, metavar="SECONDS",
                   help="hopnhat's whole-process no-change rerun time, for the ratio")
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    p.add_argument("--python", help="interpreter for a new venv (default: newest 3.12+)")
    p.add_argument("--no-customization", action="store_true",
                   help="leave the static IP and LinuxPrep customization out of the clone")
    p.add_argument("--wait-for-ip", action="store_true",
                   help="wait_for_ip_address, the IP set through vcsim's SET.guest.ipAddress")
    args = p.parse_args(argv)
    if args.vms < 1 or args.forks < 1 or args.rounds < 1 or args.clone_delay_ms < 0:
        p.error("--vms, --forks and --rounds must be >= 1, --clone-delay-ms >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    python = ""
    if not (args.venv / "pyvenv.cfg").is_file():
        found = find_python(args.python)
        if found is None:
            return unavailable(f"no usable Python for the venv ({args.python or 'python3.12+'})")
        python = found[0]
    why = ensure_venv(args.venv, python)
    if why:
        return unavailable(why)

    with tempfile.TemporaryDirectory(prefix="bench-vmware-guest-") as tmp:
        ansible = Ansible(args.venv, Path(tmp) / "ansible", args.forks)
        have = versions(args.venv, ansible.env)
        why = ansible.has_module()
        if why:
            return unavailable(why)
        customization = not args.no_customization
        with bench_lab(Path(tmp) / "lab", {SYSTEM: args.vms}) as lab:
            lab.set_delays({"CloneVM_Task": args.clone_delay_ms})
            ansible.connect(lab)
            ansible.write("inventory.yml", inventory(lab, args.wait_for_ip))
            create = ansible.write("create.yml", playbook("poweredon", customization,
                                                          args.wait_for_ip))
            destroy = ansible.write("destroy.yml", playbook("absent", customization, False))
            describe(args, have, next(iter(lab.estate.sites.values())))
            firsts, reruns = run_rounds(args.rounds, ansible, lab, create, destroy)
            report(args, firsts, reruns)
    return 0


def describe(args: argparse.Namespace, have: dict[str, str], site: Site) -> None:
    """What is measured: the versions, the lab, the task vmware_guest runs."""
    customization = not args.no_customization
    print(f"vmware_guest: ansible {have.get('ansible', '?')} (ansible-core "
          f"{have.get('ansible-core', '?')}), community.vmware "
          f"{have.get('community.vmware', '?')}, pyVmomi {have.get('pyvmomi', '?')}, "
          f"Python {have.get('python', '?')}, venv {args.venv}")
    print(f"   {args.vms} VMs, CloneVM_Task delay {args.clone_delay_ms} ms, forks "
          f"{args.forks}, rounds {args.rounds}; vcsim on {site.vcenter.url}")
    print(f"   task: clone from {site.templates[0]} into /{site.datacenter}/vm, cluster, "
          "datastore, hardware num_cpus/memory_mb, disk size_gb, network "
          f"{' with static IP' if customization else ''}, state poweredon"
          f"{', customization (LinuxPrep hostname, DNS)' if customization else ''}"
          f"{', wait_for_ip_address' if args.wait_for_ip else ''}; delegate_to "
          "localhost; credentials in VMWARE_* environment variables")
    print("   validate_certs: true, against the lab's CA bundle (SSL_CERT_FILE)")
    if customization:
        print("   note: vcsim 0.24 accepts the clone's customization spec but does not "
              "apply it (no guest IP, host name) - the spec is sent all the same")
    if args.wait_for_ip:
        print("   note: wait_for_ip_address ends at once: vmware_guest sets the IP "
              "through vcsim's SET.guest.ipAddress (advanced_settings: one more "
              "ReconfigVM_Task per VM, not made against a real vCenter)")
    else:
        print("   note: wait_for_ip_address left out: vcsim reports no guest IP for a "
              "clone it did not customize (hopnhat's apply does wait for the IP)")


def run_rounds(rounds: int, ansible: Ansible, lab: BenchLab, create: Path, destroy: Path
               ) -> tuple[list[Run], list[Run]]:
    """Each round: the VMs destroyed (but before the first), created, and created again
    (the no-change rerun); the rounds stop at the first failure. Out: the first runs and
    the reruns."""
    firsts: list[Run] = []
    reruns: list[Run] = []
    for round_ in range(rounds):
        if round_:
            gone = ansible.run(destroy, lab)
            if not gone.ok:
                print(f"   destroy between rounds FAILED:\n{gone.tail}")
                break
        first = ansible.run(create, lab)
        firsts.append(first)
        if not first.ok:
            print(f"   first run FAILED (exit != 0), {first.failed} host(s) failed:\n"
                  f"{first.tail}")
            break
        rerun = ansible.run(create, lab)
        reruns.append(rerun)
        if not rerun.ok:
            print(f"   rerun FAILED:\n{rerun.tail}")
            break
    return firsts, reruns


def report(args: argparse.Namespace, firsts: list[Run], reruns: list[Run]) -> None:
    ok_firsts = [r for r in firsts if r.ok]
    ok_reruns = [r for r in reruns if r.ok]
    if not ok_firsts:
        print(f"   no figures. {reference()}")
        return
    first = statistics.median(r.seconds for r in ok_firsts)
    last = ok_firsts[-1]
    print(f"   first run (creates {args.vms}):  {first:7.2f} s  median of {len(ok_firsts)} "
          f"({', '.join(f'{r.seconds:.2f}' for r in ok_firsts)}); changed {last.changed}/"
          f"{last.hosts}; {last.soap()}")
    rerun = None
    if ok_reruns:
        rerun = statistics.median(r.seconds for r in ok_reruns)
        lr = ok_reruns[-1]
        print(f"   no-change rerun:       {rerun:7.2f} s  median of {len(ok_reruns)} "
              f"({', '.join(f'{r.seconds:.2f}' for r in ok_reruns)}); changed {lr.changed}/"
              f"{lr.hosts}; {lr.soap()}")
    print(f"   {reference()}")
    if args.hopnhat_apply:
        print(f"   vs hopnhat apply {args.hopnhat_apply:.2f} s: vmware_guest/hopnhat = "
              f"{first / args.hopnhat_apply:.1f}x (issue's target >= 4x)")
    if args.hopnhat_rerun and rerun is not None:
        print(f"   vs hopnhat rerun {args.hopnhat_rerun:.3f} s: vmware_guest/hopnhat = "
              f"{rerun / args.hopnhat_rerun:.1f}x (issue's target >= 20x)")


if __name__ == "__main__":
    sys.exit(main())
