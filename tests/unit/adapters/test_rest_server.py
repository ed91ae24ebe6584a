"""adapters/rest_server: a repository's size as its rest-server counts it, and what the
server deleted by its metrics, read over TLS from a small stand-in server (the lab's CA and
certificate, rest-server's v2 listings and metrics text)."""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestrator.adapters.rest_server import (
    RestServerError,
    deleted_files,
    repository_size,
    server_deletions,
)
from orchestrator.estate import load_estate
from orchestrator.lab.rest import ensure_pki
from orchestrator.settings import Paths
from tests.helpers import REPO

USER, PASSWORD = "dvc", "s3cret/with@odd:chars%"
FILES = {"data": [100, 250], "index": [7], "keys": [3], "locks": [], "snapshots": [11, 12]}
CONFIG = 155
#: rest-server 0.14's metrics text, as its /metrics serves it (abridged)
METRICS = """# HELP rest_server_blob_delete_total Total number of blobs deleted
# TYPE rest_server_blob_delete_total counter
rest_server_blob_delete_total{repo="dvc",type="locks",user="dvc"} 4
rest_server_blob_delete_total{repo="dvc",type="snapshots",user="dvc"} 2
rest_server_blob_delete_total{repo="dvc",type="data",user="dvc"} 1.5e+01
# HELP rest_server_blob_write_total Total number of blobs written
rest_server_blob_write_total{repo="dvc",type="data",user="dvc"} 99
"""


class Handler(BaseHTTPRequestHandler):
    broken = False

    def _allowed(self) -> bool:
        wanted = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {wanted}":
            self.send_error(401)
            return False
        return True

    def do_HEAD(self) -> None:
        if self._allowed() and self.path == f"/{USER}/config":
            self.send_response(200)
            self.send_header("Content-Length", str(CONFIG))
            self.end_headers()

    def do_GET(self) -> None:
        if not self._allowed():
            return
        if self.path == "/metrics":
            body = (b"<html>" if Handler.broken else METRICS.encode())
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        folder = self.path.removeprefix(f"/{USER}/").rstrip("/")
        if folder not in FILES:
            self.send_error(404)
            return
        assert self.headers.get("Accept") == "application/vnd.x.restic.rest.v2"
        body = b"<html>" if Handler.broken else json.dumps(
            [{"name": f"{i:064x}", "size": size} for i, size in enumerate(FILES[folder])]
        ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A stand-in rest-server on the example repository host's address: (host:port, CA)."""
    paths = Paths(tmp_path / "state", load_estate(REPO / "inventory"))
    host = paths.estate.settings.repository_hosts[0]
    cert, key = ensure_pki(paths, host)
    httpd = ThreadingHTTPServer((str(host.address), 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    ca = paths.tls_ca(host.tls_ca)
    assert ca is not None
    try:
        yield f"{host.address}:{httpd.server_address[1]}", ca
    finally:
        httpd.shutdown()
        httpd.server_close()
        Handler.broken = False


def _location(tmp_path: Path, where: str, password: str = PASSWORD) -> Path:
    from urllib.parse import quote

    path = tmp_path / "location"
    path.write_text(f"rest:https://{USER}:{quote(password, safe='')}@{where}/{USER}/\n")
    return path


def test_the_size_is_the_config_and_every_listed_file(server: tuple[str, Path],
                                                      tmp_path: Path) -> None:
    where, ca = server
    size = repository_size(_location(tmp_path, where), ca, name="dvc@repo-qnam-01")
    assert size == CONFIG + sum(sum(sizes) for sizes in FILES.values())


def test_a_refusal_names_the_repository_and_never_the_password(server: tuple[str, Path],
                                                               tmp_path: Path) -> None:
    where, ca = server
    with pytest.raises(RestServerError) as caught:
        repository_size(_location(tmp_path, where, "wrong-password"), ca, name="dvc@repo")
    assert "dvc@repo" in str(caught.value) and "401" in str(caught.value)
    assert "wrong-password" not in str(caught.value)


def test_a_server_the_ca_did_not_sign_is_refused(server: tuple[str, Path],
                                                 tmp_path: Path) -> None:
    where, _ = server
    other = Paths(tmp_path / "other", load_estate(REPO / "inventory"))
    ensure_pki(other, other.estate.settings.repository_hosts[0])
    foreign_ca = other.tls_ca(other.estate.settings.repository_hosts[0].tls_ca)
    assert foreign_ca is not None
    with pytest.raises(RestServerError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
        repository_size(_location(tmp_path, where), foreign_ca, name="dvc@repo")


def test_a_listing_that_is_not_json_is_an_error(server: tuple[str, Path],
                                                tmp_path: Path) -> None:
    where, ca = server
    Handler.broken = True
    with pytest.raises(RestServerError, match="not rest-server's v2 JSON"):
        repository_size(_location(tmp_path, where), ca, name="dvc@repo")


def test_a_location_that_is_not_rest_https_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "location"
    path.write_text("sftp:restic-dvc@repo:/repo\n")
    with pytest.raises(RestServerError, match="not a rest:https://"):
        repository_size(path, tmp_path / "ca.pem", name="dvc@repo")


def test_the_deletions_are_summed_by_file_type() -> None:
    assert deleted_files(METRICS) == {"locks": 4, "snapshots": 2, "data": 15}
    assert deleted_files("") == {}
    with pytest.raises(ValueError):
        deleted_files('rest_server_blob_delete_total{type="data"} many')


def test_a_servers_deletions_are_read_from_its_metrics(server: tuple[str, Path]) -> None:
    where, ca = server
    address, port = where.rsplit(":", 1)
    assert server_deletions(address, int(port), USER, PASSWORD, ca, name="dvc's server") == {
        "locks": 4, "snapshots": 2, "data": 15}
    with pytest.raises(RestServerError) as caught:
        server_deletions(address, int(port), USER, "nope-secret", ca, name="dvc's server")
    assert "401" in str(caught.value) and "nope-secret" not in str(caught.value)
