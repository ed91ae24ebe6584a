"""restic's rest-server on the lab's rest repository hosts, as the restic_repository role
sets it up on a real one.

For a repository host with ``protocol: rest`` the lab runs, inside that host's guest (its
mount and UTS namespaces, entered with ``nsenter``), one process per server:

- ``rest-<host>-<code>`` for each system backing up there: ``--append-only
  --private-repos`` on the system's ``backup.port``, ``--path <storage>/<code>`` (so the
  system's ``--max-size``, its ``backup.quota_gb``, counts its own repository only), an
  htpasswd holding that system's user alone;
- ``rest-<host>-maintenance``: no append-only, ``--path <storage>``, on
  ``maintenance_port``, whose htpasswd holds the control host's user alone.

All serve TLS with a certificate the lab's CA signs for the host's address (the CA is the
estate's ``tls_ca``; :func:`ensure_pki` makes both when the CA is missing) and
``--prometheus`` (metrics for the ``metrics`` user only, which no htpasswd here has). The
servers' files live in the guest's own folder (``<guest root>/rest/``), which the guest sees
at the same path. Each process is recorded with what it was started with: ``lab up`` leaves
a server that runs as wanted alone and restarts one whose settings (or guest) changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from orchestrator.adapters.vault import write_private
from orchestrator.errors import LabError
from orchestrator.estate.endpoints import htpasswd_line, rest_systems
from orchestrator.estate.model import Estate, RepositoryHost, SecretRef
from orchestrator.estate.secrets import Secrets
from orchestrator.files import write_atomically
from orchestrator.lab import gobuild
from orchestrator.lab.guests import INIT_ENV, guest_root
from orchestrator.lab.processes import ProcessRecord, ProcessTable
from orchestrator.process import run, spawn
from orchestrator.settings import Paths

GiB = 1024 ** 3


@dataclass(frozen=True)
class Server:
    """One rest-server of a repository host."""

    name: str  # the system code, or "maintenance"
    port: int
    path: str  # inside the guest
    user: str
    password: str
    append_only: bool
    max_size: int | None  # bytes
    #: further htpasswd users (name, password): a system server's metrics user
    others: tuple[tuple[str, str], ...] = ()

    def htpasswd(self) -> str:
        return "".join(htpasswd_line(user, password) + "\n"
                       for user, password in ((self.user, self.password), *self.others))

    def argv(self, binary: str, address: str, folder: Path) -> list[str]:
        argv = [binary, "--listen", f"{address}:{self.port}", "--path", self.path,
                "--htpasswd-file", str(folder / f"{self.name}.htpasswd"),
                "--tls", "--tls-cert", str(folder / "server.pem"),
                "--tls-key", str(folder / "server.key"), "--tls-min-ver", "1.2",
                "--prometheus"]
        if self.append_only:
            argv += ["--append-only", "--private-repos"]
        if self.max_size is not None:
            argv += ["--max-size", str(self.max_size)]
        return argv


def servers(estate: Estate, secrets: Secrets, host: RepositoryHost) -> list[Server]:
    """The rest-servers repository host ``host`` runs (none for an SFTP host)."""
    if host.protocol != "rest":
        return []
    assert host.maintenance_port is not None
    out = [Server("maintenance", host.maintenance_port, host.storage_path,
                  host.maintenance_user,
                  secrets.get(SecretRef(vault=host.maintenance_secret)), False, None)]
    for code, port in rest_systems(estate, host.name).items():
        backup = estate.systems[code].backup
        assert backup is not None
        quota = None if backup.quota_gb is None else int(backup.quota_gb * GiB)
        out.append(Server(code, port, f"{host.storage_path}/{code}", code,
                          secrets.get(SecretRef(vault=backup.rest_secret(code))), True, quota,
                          ((host.metrics_user,
                            secrets.get(SecretRef(vault=host.metrics_secret))),)))
    return out


# --- certificates ---------------------------------------------------------------------------


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    write_private(path, key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))


def ensure_pki(paths: Paths, host: RepositoryHost) -> tuple[Path, Path]:
    """The lab's CA (the estate's ``tls_ca``, its key beside it as ``<name>.key``; made when
    missing) and ``host``'s certificate and key signed by it (``<host>.pem``/``.key`` beside
    the CA; made again when missing, not for the address or not from this CA). Returns
    (certificate, key). Raises LabError when the CA exists without its key."""
    ca_path = paths.tls_ca(host.tls_ca)
    assert ca_path is not None
    ca_key_path = ca_path.with_suffix(".key")
    now = datetime.now(UTC)
    if not ca_path.exists():
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                             f"hopnhat lab CA {paths.estate.id}")])
        ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - timedelta(days=1))
              .not_valid_after(now + timedelta(days=3650))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                           False, False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        _write_key(ca_key_path, ca_key)
        ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    if not ca_key_path.exists():
        raise LabError(f"{ca_path}: the lab signs its repository hosts' certificates with "
                       f"this CA's key, {ca_key_path}, which is missing")
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    cert_path = ca_path.parent / f"{host.name}.pem"
    key_path = ca_path.parent / f"{host.name}.key"
    if _valid_for(cert_path, key_path, ca, host.address):
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host.name)]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address(str(host.address))),
                x509.DNSName(host.name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(loaded, hashes.SHA256()))
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _valid_for(cert_path: Path, key_path: Path, ca: x509.Certificate,
               address: ipaddress.IPv4Address) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    return (ipaddress.ip_address(str(address)) in names.get_values_for_type(x509.IPAddress)
            and cert.not_valid_after_utc > datetime.now(UTC) + timedelta(days=30))


# --- processes ------------------------------------------------------------------------------


def process_name(host: str, server: str) -> str:
    return f"rest-{host}-{server}"


def start_rest_servers(paths: Paths, table: ProcessTable, host: RepositoryHost,
                       guest: ProcessRecord, secrets: Secrets) -> list[ProcessRecord]:
    """Run ``host``'s rest-servers inside its guest ``guest`` (started before): each one
    that does not run as wanted is (re)started. Servers the estate no longer names are
    stopped. Raises LabError when one does not come up."""
    wanted = servers(paths.estate, secrets, host)
    prefix = process_name(host.name, "")
    names = {process_name(host.name, s.name) for s in wanted}
    for rec in table.all():
        if rec.kind == "rest-server" and rec.name.startswith(prefix) and rec.name not in names:
            table.stop(rec.name)
    if not wanted:
        return []
    folder = guest_root(paths.lab, host.name) / "rest"
    folder.mkdir(mode=0o700, exist_ok=True)
    cert, key = ensure_pki(paths, host)
    changed = _install(folder, "server.pem", cert.read_bytes())
    changed |= _install(folder, "server.key", key.read_bytes())
    binary = gobuild.rest_server_binary(paths.lab)
    changed |= _install(folder, "rest-server", binary.read_bytes(), mode=0o700)
    out = []
    for server in wanted:
        name = process_name(host.name, server.name)
        file_changed = _install(folder, f"{server.name}.htpasswd", server.htpasswd().encode())
        argv = server.argv(str(folder / "rest-server"), str(host.address), folder)
        fingerprint = hashlib.sha256(json.dumps(argv).encode()).hexdigest()[:16]
        live = table.running(name)
        if (live is not None and not changed and not file_changed
                and live.details.get("guest_pid") == str(guest.pid)
                and live.details.get("argv") == fingerprint):
            out.append(live)
            continue
        if live is not None:
            table.stop(name)
        out.append(_start(table, name, guest, server, argv, fingerprint, folder))
    return out


def _install(folder: Path, name: str, data: bytes, mode: int = 0o600) -> bool:
    """Write ``folder/name`` when its content differs; True when it did."""
    path = folder / name
    if path.exists() and path.read_bytes() == data:
        return False
    write_atomically(path, data, mode)
    return True


def _start(table: ProcessTable, name: str, guest: ProcessRecord, server: Server,
           argv: list[str], fingerprint: str, folder: Path) -> ProcessRecord:
    enter = ["nsenter", "--target", str(guest.pid), "--mount", "--uts", "--"]
    done = run([*enter, "mkdir", "-p", "-m", "0700", "--", server.path], env=INIT_ENV,
               inherit_env=False, cwd="/", timeout=30)
    if not done.ok:
        raise LabError(f"{name}: cannot make {server.path}: {done.stderr.strip()}")
    log = folder / f"{server.name}.log"
    proc = spawn([*enter, *argv], env=INIT_ENV, inherit_env=False, log=log, cwd="/")
    address = argv[argv.index("--listen") + 1]
    ip, port = address.rsplit(":", 1)
    _wait_listening(proc.pid, ip, int(port), log, name)
    return table.record(name, "rest-server", proc.pid, address, guest_pid=str(guest.pid),
                        argv=fingerprint, role="repository")


def _wait_listening(pid: int, ip: str, port: int, log: Path, name: str,
                    timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            break
        try:
            with socket.create_connection((ip, port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.1)
    tail = log.read_text(errors="replace")[-600:] if log.exists() else ""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 15)
    raise LabError(f"{name}: rest-server did not listen on {ip}:{port}: {tail.strip()}")
