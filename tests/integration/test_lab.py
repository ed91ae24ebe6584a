"""The lab as `hopnhat lab up` starts it: one vcsim per vCenter of the estate (Đà Nẵng's and
Quảng Nam's, each modelling its own site), VMs that become real SSH hosts when powered on,
and the repository host taking restic backups over SFTP."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from pyVmomi import vim

from orchestrator import process
from orchestrator.adapters import ssh, vsphere
from orchestrator.adapters.vault import read_vault
from orchestrator.errors import SSHError, VSphereError
from orchestrator.estate.endpoints import client_location
from orchestrator.estate.model import SecretRef
from orchestrator.estate.secrets import Secrets
from orchestrator.lab import control, data, guests
from orchestrator.lab.processes import ProcessTable, is_alive
from tests.helpers import HOPNHAT, LabHandle, wait_for, wait_task

TEST_VM = "labtest-01"


def find(folder: Any, name: str) -> Any:
    return next(e for e in folder.childEntity if e.name == name)


def cli(handle: LabHandle, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HOPNHAT), *args], env=handle.env, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture(scope="module")
def si(lab: LabHandle) -> Iterator[Any]:
    """A session on Quảng Nam's vCenter (the secondary site's)."""
    with vsphere.session(lab.endpoint("quangnam")) as service:
        yield service


def test_lab_status_lists_each_part_with_address_and_pid(lab: LabHandle) -> None:
    result = cli(lab, "lab", "status", "--json")
    assert result.returncode == 0, result.stderr
    parts = {p["name"]: p for p in json.loads(result.stdout)}
    repo = lab.estate.settings.repository_hosts[0]
    assert [n for n, p in parts.items() if p["kind"] == "vcsim"] == [
        "vcsim-danang", "vcsim-quangnam"]
    assert parts["vcsim-danang"]["address"] == lab.estate.sites["danang"].vcenter.url
    assert parts["vcsim-quangnam"]["address"] == lab.estate.sites["quangnam"].vcenter.url
    assert parts["vcsim-danang"]["address"] != parts["vcsim-quangnam"]["address"]
    assert parts[f"guest-{repo.name}"]["kind"] == "repository"
    assert parts[f"guest-{repo.name}"]["address"] == f"{repo.address}:22"
    assert parts["hypervisor"]["alive"]
    assert all(p["alive"] and p["pid"] > 1 for p in parts.values())


def test_lab_up_twice_is_harmless(lab: LabHandle) -> None:
    before = {p.name: p.pid for p in control.status(lab.state_dir / "lab")}
    after = {p.name: p.pid for p in control.up(lab.paths)}
    assert after == before


def test_lab_up_stops_a_vcsim_the_estate_no_longer_names(lab: LabHandle) -> None:
    """A lab started when both sites shared one vCenter recorded it as "vcsim": `lab up`
    stops it by its PID (its port may be one of the estate's vCenters' now)."""
    table = ProcessTable(lab.state_dir / "lab")
    old = process.spawn(["sleep", "300"], log=lab.state_dir / "old-vcsim.log")
    try:
        record = table.record("vcsim", "vcsim", old.pid, "https://127.0.0.1:1/sdk")
        before = {p.name: p.pid for p in control.status(lab.state_dir / "lab")}
        after = {p.name: p.pid for p in control.up(lab.paths)}
        assert old.wait(timeout=30) is not None and not is_alive(record)
        assert "vcsim" not in after
        assert after == {name: pid for name, pid in before.items() if name != "vcsim"}
    finally:
        if old.poll() is None:
            old.kill()
            old.wait()
        table.forget("vcsim")


def test_each_sites_vcenter_over_tls_models_that_site_alone(lab: LabHandle) -> None:
    for site in lab.estate.sites.values():
        with vsphere.session(lab.endpoint(site.name)) as service:
            content = service.RetrieveContent()
            datacenters = {dc.name: dc for dc in content.rootFolder.childEntity}
            assert list(datacenters) == [site.datacenter]  # its own datacenter, no other
            dc = datacenters[site.datacenter]
            assert sorted(c.name for c in dc.hostFolder.childEntity) == sorted(site.clusters)
            assert sorted(d.name for d in dc.datastore) == sorted(site.datastores)
            networks = {n.name for n in dc.network}
            assert {net.port_group for net in site.networks.values()} <= networks
            templates = [vm.name for vm in dc.vmFolder.childEntity  # folders too
                         if isinstance(vm, vim.VirtualMachine) and vm.config and vm.config.template]
            assert sorted(templates) == sorted(site.templates)
            rows = vsphere.retrieve(service, vim.ClusterComputeResource,
                                    ["name", "summary.numHosts"])
            assert {r["name"]: r["summary.numHosts"] for r in rows} == dict.fromkeys(
                site.clusters, 4)


def test_each_vcenter_has_its_own_certificate_and_credentials(lab: LabHandle) -> None:
    danang, quangnam = lab.endpoint("danang"), lab.endpoint("quangnam")
    assert danang.username != quangnam.username
    assert danang.password != quangnam.password
    assert danang.ca_bundle is not None and quangnam.ca_bundle is not None
    assert danang.ca_bundle.read_bytes() != quangnam.ca_bundle.read_bytes()
    # Đà Nẵng's certificate does not vouch for Quảng Nam's vCenter
    crossed = vsphere.Endpoint(quangnam.url, quangnam.username, quangnam.password,
                               danang.ca_bundle, sites=("quangnam",))
    with pytest.raises(VSphereError, match="certificate is not trusted"):
        vsphere.connect(crossed)
    # nor do Đà Nẵng's credentials open Quảng Nam's vCenter
    other = vsphere.Endpoint(quangnam.url, danang.username, danang.password,
                             quangnam.ca_bundle, sites=("quangnam",))
    with pytest.raises(VSphereError) as refused:
        vsphere.connect(other)
    assert str(refused.value) == (
        f"{quangnam.url} (site quangnam): vCenter refused the login of "
        f"'{danang.username}' (wrong user name or password)")
    assert danang.password not in str(refused.value)
    # the lab's vault holds one password per vCenter
    vault = read_vault(lab.paths.vault_file, lab.paths.vault_password_file)
    assert {"vcenter_danang_password", "vcenter_quangnam_password"} <= set(vault)
    assert "vcenter_password" not in vault


def test_vcenter_refuses_a_wrong_password(lab: LabHandle) -> None:
    good = lab.endpoint()
    bad = vsphere.Endpoint(good.url, good.username, "not-the-password", good.ca_bundle)
    with pytest.raises(VSphereError, match="refused the login"):
        vsphere.connect(bad)


def _target(lab: LabHandle, address: str, name: str) -> ssh.Target:
    return ssh.Target(name, address, 22, "root", lab.paths.private_key, lab.paths.known_hosts)


def test_a_powered_on_vm_becomes_an_ssh_host_at_its_ip(lab: LabHandle, si: Any) -> None:
    site = lab.estate.sites["quangnam"]
    drill = site.networks["drill"]
    ip = str(drill.pool.end)
    dc = find(si.RetrieveContent().rootFolder, site.datacenter)
    cluster = find(dc.hostFolder, site.clusters[0])
    template = find(dc.vmFolder, site.templates[0])
    wait_task(template.CloneVM_Task(folder=dc.vmFolder, name=TEST_VM, spec=vim.vm.CloneSpec(
        location=vim.vm.RelocateSpec(pool=cluster.resourcePool), powerOn=False)))
    vm = find(dc.vmFolder, TEST_VM)
    custom = vim.vm.customization
    wait_task(vm.CustomizeVM_Task(spec=custom.Specification(
        identity=custom.LinuxPrep(hostName=custom.FixedName(name=TEST_VM), domain="lab"),
        globalIPSettings=custom.GlobalIPSettings(),
        nicSettingMap=[custom.AdapterMapping(adapter=custom.IPSettings(
            ip=custom.FixedIp(ipAddress=ip), subnetMask=str(drill.subnet.netmask),
            gateway=[str(drill.gateway)]))])))
    wait_task(vm.PowerOnVM_Task())

    assert ssh.wait_for_port(ip, 22, timeout=30), "no sshd came up at the VM's IP"
    target = _target(lab, ip, TEST_VM)
    client = ssh.connect(target)
    try:
        result = ssh.execute(client, target, "hostname; test -d /srv && echo srv-ok")
    finally:
        client.close()
    assert result.stdout.split() == [TEST_VM, "srv-ok"]

    # strict host keys: with another key pinned for that address, the connection is refused
    wrong = lab.state_dir / "wrong_known_hosts"
    other = paramiko.Ed25519Key.from_private_key_file(str(lab.paths.private_key))
    wrong.write_text(f"{ip} ssh-ed25519 {other.get_base64()}\n")
    with pytest.raises(SSHError):
        ssh.connect(ssh.Target(TEST_VM, ip, 22, "root", lab.paths.private_key, wrong))

    wait_task(vm.PowerOffVM_Task())
    wait_for("the guest to end with its VM's power-off", lambda: ProcessTable(
        lab.state_dir / "lab").running(f"guest-{TEST_VM}") is None, 30, interval=0.1)
    assert not ssh.wait_for_port(ip, 22, timeout=1)
    wait_task(vm.Destroy_Task())
    wait_for("the destroyed VM's guest disk to go",
             lambda: not (lab.state_dir / "lab" / "guests" / TEST_VM).exists(), 30, interval=0.1)


def test_restic_on_a_guest_backs_up_to_the_repository_host_and_restores(
        lab: LabHandle) -> None:
    """The path operators rely on: a host's data → restic over REST (the system's own
    append-only rest-server, its certificate checked against the estate's CA, the
    credentials in a location file) → the repository host in the secondary DC → restored
    identical."""
    estate, paths = lab.estate, lab.paths
    code = "ioc"
    backup = estate.systems[code].backup
    assert backup is not None and backup.port is not None
    repo_host = estate.repository_host(backup.repository_host)
    name = "labtest-restic"
    ip = str(estate.sites["quangnam"].networks["drill"].pool.start)
    pub = paths.private_key.with_name(paths.private_key.name + ".pub").read_text().strip()
    table = ProcessTable(lab.state_dir / "lab")
    guests.start_guest(lab.state_dir / "lab", table, name, name, ip, [pub], paths.known_hosts)
    try:
        source = guests.guest_srv(lab.state_dir / "lab", name) / code
        summary = data.generate(source, seed="lab-test", size_mb=4, files=40)
        target = _target(lab, ip, name)
        client = ssh.connect(target)
        try:
            sftp = client.open_sftp()
            secrets = Secrets(paths)
            with sftp.open("/root/restic.pw", "w") as fh:
                fh.write(secrets.get(backup.password))
            sftp.chmod("/root/restic.pw", 0o600)
            with sftp.open("/root/restic.repository", "w") as fh:
                fh.write(client_location(repo_host, code, backup.port, secrets.get(
                    SecretRef(vault=backup.rest_secret(code)))))
            sftp.chmod("/root/restic.repository", 0o600)
            sftp.put(str(paths.tls_ca(repo_host.tls_ca)), "/root/ca.pem")
            restic = ("RESTIC_PASSWORD_FILE=/root/restic.pw restic --no-cache "
                      "--repository-file /root/restic.repository --cacert /root/ca.pem")
            steps = [f"{restic} cat config >/dev/null 2>&1 || {restic} init",
                     f"{restic} backup --json --tag lab-test /srv/{code} | tail -n1",
                     f"{restic} restore latest --target /tmp/restore --verify",
                     ]
            outputs = []
            for step in steps:
                result = ssh.execute(client, target, step, timeout=300)
                assert result.returncode == 0, (step.split()[-1], result.stderr[-500:])
                outputs.append(result.stdout)
            backup = json.loads(outputs[1])
            assert backup["message_type"] == "summary"
            assert backup["total_files_processed"] == summary.files
        finally:
            client.close()
        restored = Path(f"/proc/{table.running(f'guest-{name}').pid}/root")  # type: ignore[union-attr]
        assert data.manifest_digest(restored / "tmp" / "restore" / "srv" / code) == \
            summary.manifest_sha256
    finally:
        guests.destroy_guest(lab.state_dir / "lab", table, name)
