"""restic's rest-server, read directly (not through restic): how much a repository holds, and
what its server deleted.

A repository's size is what its rest-server counts against the system's quota (its
``--max-size``): the size of every file in the repository's folder. The REST protocol's v2
listings give each file's size, so this costs one request per folder of the repository,
however large it is. The location comes from a repository's location file (the URL with
the credentials, which never reach an error message or a log).

What a server deleted is in its own Prometheus metrics (``--prometheus``):
``rest_server_blob_delete_total`` by user, repository and file type, counted since the server
started. A system's append-only server refuses every delete but a lock's, so any other count
there means it was not append-only when it happened. Its metrics are read as the user
``metrics``, which rest-server gives the metrics and no repository.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

from orchestrator.errors import HopnhatError

#: the folders of a restic repository (beside its ``config`` file)
FOLDERS = ("data", "index", "keys", "locks", "snapshots")
_V2 = "application/vnd.x.restic.rest.v2"


class RestServerError(HopnhatError):
    """The rest-server did not answer as expected."""


def _open(location_file: Path) -> tuple[str, str, str]:
    """(``https://host:port``, repository path ending in ``/``, Basic auth value)."""
    text = location_file.read_text().strip()
    if not text.startswith("rest:https://"):
        raise RestServerError(f"{location_file}: not a rest:https:// repository location")
    url = urlsplit(text.removeprefix("rest:"))
    if url.hostname is None or url.port is None:
        raise RestServerError(f"{location_file}: no host or port in the location")
    auth = base64.b64encode(f"{unquote(url.username or '')}:{unquote(url.password or '')}"
                            .encode()).decode()
    path = url.path if url.path.endswith("/") else url.path + "/"
    return f"https://{url.hostname}:{url.port}", path, auth


def repository_size(location_file: Path, cacert: Path, *, name: str,
                    timeout: float = 30.0) -> int:
    """Bytes the repository in ``location_file`` holds as its rest-server counts them
    (``config`` and every file of its folders). ``name`` names it in errors (never the
    location, which holds credentials). Raises RestServerError."""
    base, path, auth = _open(location_file)
    context = ssl.create_default_context(cafile=str(cacert))

    def get(what: str, method: str = "GET") -> tuple[int, bytes, int | None]:
        request = urllib.request.Request(  # noqa: S310 - https:// only (checked above)
            base + path + what, method=method)
        request.add_header("Authorization", "Basic " + auth)
        request.add_header("Accept", _V2)
        try:
            with urllib.request.urlopen(request, context=context,  # noqa: S310 - https
                                        timeout=timeout) as answer:
                length = answer.headers.get("Content-Length")
                return answer.status, answer.read(), int(length) if length else None
        except urllib.error.HTTPError as exc:
            raise RestServerError(f"repository {name}: {method} {what or '/'} answered "
                                  f"{exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RestServerError(f"repository {name}: {method} {what or '/'}: {reason}"
                                  ) from None

    _, _, config = get("config", "HEAD")
    total = config or 0
    for folder in FOLDERS:
        _, body, _ = get(f"{folder}/")
        try:
            entries = json.loads(body or b"[]")
            total += sum(int(entry["size"]) for entry in entries)
        except (ValueError, KeyError, TypeError):
            raise RestServerError(f"repository {name}: the listing of {folder}/ is not "
                                  "rest-server's v2 JSON") from None
    return total


_DELETED = re.compile(r'^rest_server_blob_delete_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)\s*$')
_TYPE = re.compile(r'(?:^|,)\s*type="(?P<type>[^"\\]*)"')


def deleted_files(text: str) -> dict[str, int]:
    """File type → files deleted, summed over users and repositories, from a rest-server's
    metrics text (``rest_server_blob_delete_total``). Raises ValueError on a sample that is
    not a number."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        found = _DELETED.match(line)
        if found is None:
            continue
        kind = _TYPE.search(found["labels"])
        name = kind["type"] if kind else ""
        out[name] = out.get(name, 0) + int(float(found["value"]))
    return out


def server_deletions(address: str, port: int, user: str, password: str, cacert: Path, *,
                     name: str, timeout: float = 30.0) -> dict[str, int]:
    """What the rest-server at ``address:port`` deleted since it started, by file type
    (:func:`deleted_files`), read from its ``/metrics`` as ``user``. ``name`` names it in
    errors (the credentials never do). Raises RestServerError."""
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(
        f"https://{address}:{port}/metrics")
    request.add_header("Authorization", "Basic " + auth)
    context = ssl.create_default_context(cafile=str(cacert))
    try:
        with urllib.request.urlopen(request, context=context,  # noqa: S310 - https
                                    timeout=timeout) as answer:
            text = answer.read(16 * 1024 * 1024).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        raise RestServerError(f"{name}: GET /metrics answered {exc.code} {exc.reason}"
                              ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RestServerError(f"{name}: GET /metrics: {getattr(exc, 'reason', exc)}"
                              ) from None
    try:
        return deleted_files(text)
    except ValueError:
        raise RestServerError(f"{name}: its /metrics are not rest-server's") from None
