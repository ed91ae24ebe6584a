"""The lab's rest repository host: which rest-servers it runs and with what argv, and the
lab's PKI (a CA and the host's certificate, made once, remade when the address moves)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography import x509

from orchestrator.errors import EstateError, LabError
from orchestrator.estate import Estate, load_estate
from orchestrator.estate.model import RepositoryHost, SecretRef
from orchestrator.estate.secrets import Secrets
from orchestrator.lab.rest import GiB, Server, ensure_pki, servers
from orchestrator.settings import Paths
from tests.helpers import EXAMPLE_ESTATE, EstateCopy

HOST = "repo-qnam-01"
STORAGE = "/srv/restic"


class FakeSecrets:
    """Answers every vault key with a password of its own."""

    def get(self, ref: SecretRef) -> str:
        return f"pw-{ref.vault}"


SECRETS = cast(Secrets, FakeSecrets())


@pytest.fixture(scope="module")
def example() -> Estate:
    return load_estate(EXAMPLE_ESTATE)


def test_a_rest_host_runs_one_maintenance_server_and_one_append_only_server_per_system(
        example: Estate) -> None:
    host = example.repository_host(HOST)
    found = servers(example, SECRETS, host)
    maintenance, *systems = found
    assert maintenance == Server("maintenance", 8000, STORAGE, "hopnhat-maintenance",
                                 "pw-rest_maintenance_repo_qnam_01", False, None)
    on_host = sorted(code for code, s in example.systems.items()
                     if s.backup is not None and s.backup.repository_host == HOST)
    assert [s.name for s in systems] == on_host
    for server in systems:
        backup = example.systems[server.name].backup
        assert backup is not None and backup.quota_gb is not None
        assert server == Server(server.name, backup.port or 0, f"{STORAGE}/{server.name}",
                                server.name, f"pw-rest_password_{server.name}", True,
                                int(backup.quota_gb * 2**30),
                                (("metrics", "pw-rest_metrics_repo_qnam_01"),))
        # its htpasswd: the system's user, and the control host's metrics user
        assert [line.split(":")[0] for line in server.htpasswd().splitlines()] == [
            server.name, "metrics"]
    video = next(s for s in systems if s.name == "video")
    assert (video.port, video.max_size) == (8110, 200 * GiB)
    assert len({s.port for s in found}) == len(found)


def test_an_sftp_host_runs_no_rest_server(example: Estate) -> None:
    sftp = RepositoryHost.model_validate({"name": "repo-qnam-02", "site": "quangnam",
                                          "address": "127.20.2.11", "storage_path": STORAGE,
                                          "capacity_gb": 10})
    assert servers(example, SECRETS, sftp) == []


def test_a_systems_server_is_append_only_private_and_capped_and_always_tls() -> None:
    folder = Path("/lab/guests/repo/rest")
    argv = Server("dvc", 8104, f"{STORAGE}/dvc", "dvc", "pw", True, 100 * GiB).argv(
        "/bin/rest-server", "127.20.2.10", folder)
    assert argv == [
        "/bin/rest-server", "--listen", "127.20.2.10:8104", "--path", f"{STORAGE}/dvc",
        "--htpasswd-file", f"{folder}/dvc.htpasswd", "--tls",
        "--tls-cert", f"{folder}/server.pem", "--tls-key", f"{folder}/server.key",
        "--tls-min-ver", "1.2", "--prometheus", "--append-only", "--private-repos",
        "--max-size", str(100 * 2**30)]
    assert "pw" not in argv  # the password lives in the htpasswd only


def test_the_maintenance_server_may_delete_and_has_no_cap_but_tls() -> None:
    argv = Server("maintenance", 8000, STORAGE, "hopnhat-maintenance", "pw", False,
                  None).argv("rest-server", "127.20.2.10", Path("/f"))
    assert "--tls" in argv and "--tls-cert" in argv
    assert not {"--append-only", "--private-repos", "--max-size"} & set(argv)
    assert argv[argv.index("--path") + 1] == STORAGE


def test_a_system_coded_maintenance_cannot_take_the_maintenance_servers_files(
        estate_copy: EstateCopy) -> None:
    system = estate_copy.data("systems/ioc.yml")
    system.update(code="maintenance", name="Maintenance", vms=[
        {**system["vms"][0], "role": "app"}])
    system["backup"]["port"] = 8199
    estate_copy.path("systems/ioc.yml").unlink()
    estate_copy.write("systems/maintenance.yml", system)
    with pytest.raises(EstateError, match="maintenance server"):
        estate_copy.load()


# --- the lab's PKI --------------------------------------------------------------------------

@pytest.fixture
def paths(tmp_path: Path, example: Estate) -> Paths:
    return Paths(state=tmp_path, estate=example)


def _moved(host: RepositoryHost, address: str) -> RepositoryHost:
    return host.model_copy(update={"address": ipaddress.IPv4Address(address)})


def _ips(cert: x509.Certificate) -> list[Any]:
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return names.get_values_for_type(x509.IPAddress)


def test_ensure_pki_makes_a_ca_and_a_host_certificate_it_signed(paths: Paths) -> None:
    host = paths.estate.repository_host(HOST)
    cert_path, key_path = ensure_pki(paths, host)
    ca_path = paths.state / "pki" / "ca.pem"
    assert (cert_path, key_path) == (ca_path.parent / f"{HOST}.pem",
                                     ca_path.parent / f"{HOST}.key")
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert _ips(cert) == [ipaddress.IPv4Address("127.20.2.10")]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for private in (key_path, ca_path.with_suffix(".key")):
        assert private.stat().st_mode & 0o077 == 0


def test_ensure_pki_leaves_a_valid_certificate_alone(paths: Paths) -> None:
    host = paths.estate.repository_host(HOST)
    cert_path, key_path = ensure_pki(paths, host)
    ca = (paths.state / "pki" / "ca.pem").read_bytes()
    cert, key = cert_path.read_bytes(), key_path.read_bytes()
    assert ensure_pki(paths, host) == (cert_path, key_path)
    assert (cert_path.read_bytes(), key_path.read_bytes()) == (cert, key)
    assert (paths.state / "pki" / "ca.pem").read_bytes() == ca


def test_ensure_pki_makes_the_certificate_again_for_a_new_address(paths: Paths) -> None:
    host = paths.estate.repository_host(HOST)
    cert_path, _ = ensure_pki(paths, host)
    before = cert_path.read_bytes()
    ca = (paths.state / "pki" / "ca.pem").read_bytes()
    ensure_pki(paths, _moved(host, "127.20.2.99"))
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert_path.read_bytes() != before
    assert _ips(cert) == [ipaddress.IPv4Address("127.20.2.99")]
    assert (paths.state / "pki" / "ca.pem").read_bytes() == ca  # the same CA signs it
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca))


def test_ensure_pki_makes_the_certificate_again_when_the_ca_changed(paths: Paths) -> None:
    host = paths.estate.repository_host(HOST)
    cert_path, _ = ensure_pki(paths, host)
    for name in ("ca.pem", "ca.key"):
        (paths.state / "pki" / name).unlink()
    ensure_pki(paths, host)
    ca = x509.load_pem_x509_certificate((paths.state / "pki" / "ca.pem").read_bytes())
    x509.load_pem_x509_certificate(cert_path.read_bytes()).verify_directly_issued_by(ca)


def test_ensure_pki_refuses_a_ca_without_its_key(paths: Paths) -> None:
    host = paths.estate.repository_host(HOST)
    ensure_pki(paths, host)
    (paths.state / "pki" / "ca.key").unlink()
    with pytest.raises(LabError, match=r"ca\.key, which is missing"):
        ensure_pki(paths, host)
