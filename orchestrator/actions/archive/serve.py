"""``archive serve``: a read-only page for the people who ask for old records — search the
catalogues, download a file (restored on demand and checked, as ``archive get`` does).

Standard library HTTP server, bound to 127.0.0.1 by default. Every request needs the token:
``?token=…`` once (the page then keeps it in an HttpOnly, SameSite=Strict cookie) or an
``Authorization: Bearer …`` header; without it, 401 and nothing else. Only two pages exist:
``/`` (search) and ``/file`` (download); a file is named by its catalogue path and system,
never by a path on this host, so nothing outside the catalogue can be asked for. Every
download is an ``archive-get`` run in the ledger, with who asked (the address) beside the
operator who runs the server. Output is HTML-escaped by the template (a file named
``<script>…`` shows as text).
"""

from __future__ import annotations

import hmac
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from orchestrator.actions.archive import catalogue, search
from orchestrator.actions.archive import get as archive_get
from orchestrator.errors import HopnhatError
from orchestrator.ledger import Ledger
from orchestrator.reports.html import render, words

COOKIE = "hopnhat_archive"
LIMIT = 100

WORDS: dict[str, tuple[str, str]] = {
    "title": ("Archive of retired systems", "Tra cứu hồ sơ lưu trữ"),
    "query": ("Words, a pattern such as *.pdf, or a folder such as /srv/qlvb/2023/",
              "Từ khoá, mẫu như *.pdf, hoặc thư mục như /srv/qlvb/2023/"),
    "system": ("System", "Hệ thống"),
    "all": ("all", "tất cả"),
    "year": ("Year", "Năm"),
    "search": ("Search", "Tìm kiếm"),
    "path": ("File", "Tệp"),
    "size": ("Size", "Dung lượng"),
    "changed": ("Last changed", "Sửa đổi lần cuối"),
    "snapshot": ("Snapshot", "Bản sao lưu"),
    "download": ("Download", "Tải về"),
    "none": ("Nothing found.", "Không tìm thấy hồ sơ nào."),
    "more": ("More results exist: narrow the search.",
             "Còn nhiều kết quả khác: hãy thu hẹp tìm kiếm."),
    "found": ("files found", "tệp tìm thấy"),
    "error": ("Error", "Lỗi"),
    "other": ("Tiếng Việt", "English"),  # the link to the other language
    "note": ("Every download is recorded (who, what, when).",
             "Mọi lượt tải về đều được ghi nhận (ai, tệp nào, khi nào)."),
}


@dataclass(frozen=True)
class Archive:
    """What the page reads: the state folder, the estate, the catalogued systems and how a
    file is restored (``restic_for(system)``: a context giving ``dump``)."""

    state: Path
    estate: str
    ledger_file: Path
    zone: str
    systems: tuple[str, ...]
    restic_for: Callable[[str], AbstractContextManager[archive_get.Dump]]


def _lang(params: dict[str, list[str]]) -> str:
    return "en" if params.get("lang", [""])[0] == "en" else "vi"


class _Handler(BaseHTTPRequestHandler):
    archive: Archive
    token: str
    server_version = "hopnhat-archive"
    sys_version = ""

    # --- the door -------------------------------------------------------------------------

    def _authorised(self, params: dict[str, list[str]]) -> tuple[bool, bool]:
        """(allowed, the token came in the URL: set the cookie)."""
        given = params.get("token", [""])[0]
        if given and hmac.compare_digest(given.encode(), self.token.encode()):
            return True, True
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer ") and hmac.compare_digest(
                header[7:].strip().encode(), self.token.encode()):
            return True, False
        cookie = SimpleCookie(self.headers.get("Cookie", ""))
        if COOKIE in cookie and hmac.compare_digest(cookie[COOKIE].value.encode(),
                                                     self.token.encode()):
            return True, False
        return False, False

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        try:
            params = parse_qs(url.query, max_num_fields=20)
        except ValueError:
            self.send_error(HTTPStatus.BAD_REQUEST)
            return
        allowed, from_url = self._authorised(params)
        if not allowed:
            self._page(HTTPStatus.UNAUTHORIZED, "error", _lang(params),
                       error="token required (401)")
            return
        try:
            if url.path == "/":
                self._search(params, from_url)
            elif url.path == "/file":
                self._download(params)
            else:
                self._page(HTTPStatus.NOT_FOUND, "error", _lang(params), error="not found")
        except HopnhatError as exc:
            self._page(HTTPStatus(400 if exc.exit_code == 2 else 500), "error",
                       _lang(params), error=str(exc))

    def do_POST(self) -> None:
        self.send_error(HTTPStatus.METHOD_NOT_ALLOWED)

    def log_message(self, format: str, *args: Any) -> None:
        del format, args  # the ledger records downloads; URLs may carry the token

    # --- pages ----------------------------------------------------------------------------

    def _page(self, status: HTTPStatus, view: str, lang: str, *, cookie: bool = False,
              **values: Any) -> None:
        html = render("archive-page.html.j2", view=view, t=words(lang, WORDS), lang=lang,
                      systems=self.archive.systems, **values)
        body = html.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", "default-src 'none'; style-src "
                         "'unsafe-inline'; form-action 'self'")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        if cookie:
            self.send_header("Set-Cookie", f"{COOKIE}={self.token}; HttpOnly; "
                             "SameSite=Strict; Path=/")
        self.end_headers()
        self.wfile.write(body)

    def _search(self, params: dict[str, list[str]], from_url: bool) -> None:
        lang = _lang(params)
        text = params.get("q", [""])[0]
        system = params.get("system", [""])[0]
        year_text = params.get("year", [""])[0].strip()
        values: dict[str, Any] = {"q": text, "system": system, "year": year_text,
                                  "results": None, "more": False}
        if text.strip():
            if system and system not in self.archive.systems:
                raise search.QueryError(f"no catalogue for system {system!r}")
            if year_text and not year_text.isdigit():
                raise search.QueryError(f"year {year_text!r}: not a year")
            query = search.parse(text, int(year_text) if year_text else None)
            found: list[search.Match] = []
            more = False
            with Ledger(self.archive.ledger_file) as ledger:
                for code in [system] if system else list(self.archive.systems):
                    db = catalogue.open_checked(ledger, self.archive.state,
                                                self.archive.estate, code)
                    try:
                        hits, extra = search.search(db, code, query, limit=LIMIT - len(found),
                                                    zone=self.archive.zone)
                    finally:
                        db.close()
                    found += hits
                    more = more or extra
                    if len(found) >= LIMIT:
                        break
            values["results"] = [{**m.as_dict(self.archive.zone), "href": "/file?" + urlencode(
                {"system": m.system, "path": m.path, "snapshot": m.snapshot,
                 "host": m.host})} for m in found]
            values["more"] = more
        values["switch"] = "?" + urlencode({"q": text, "system": system, "year": year_text,
                                            "lang": "vi" if lang == "en" else "en"})
        self._page(HTTPStatus.OK, "search", lang, cookie=from_url, **values)

    def _download(self, params: dict[str, list[str]]) -> None:
        system = params.get("system", [""])[0]
        path = params.get("path", [""])[0]
        snapshot = params.get("snapshot", [None])[0]
        host = params.get("host", [None])[0]
        if system not in self.archive.systems:
            raise search.QueryError(f"no catalogue for system {system!r}")
        with (_scratch_folder(self.archive.state) as scratch,
              Ledger(self.archive.ledger_file) as ledger):
            db = catalogue.open_checked(ledger, self.archive.state, self.archive.estate,
                                        system)
            try:
                wanted = archive_get.resolve(db, system, [path], scratch, snapshot=snapshot,
                                             host=host)
            finally:
                db.close()
            with self.archive.restic_for(system) as dump:
                result = archive_get.get(ledger, self.archive.estate, system, wanted, dump,
                                         to=scratch, via=f"archive serve, for "
                                         f"{self.client_address[0]}")
            done = result.files[0]
            if done.result != archive_get.OK:
                raise HopnhatError(f"{path}: {done.detail}")
            name = Path(path).name
            size = done.wanted.destination.stat().st_size
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.send_header("Content-Disposition",
                             f"attachment; filename*=UTF-8''{quote(name, safe='')}")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("X-Hopnhat-SHA256", done.sha256 or "")
            self.end_headers()
            with done.wanted.destination.open("rb") as f:
                shutil.copyfileobj(f, self.wfile)


@contextmanager
def _scratch_folder(state: Path) -> Iterator[Path]:
    """A folder of its own under the state's ``tmp`` for the block, removed after it."""
    scratch = Path(tempfile.mkdtemp(prefix="archive-", dir=state / "tmp"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class Server(ThreadingHTTPServer):
    daemon_threads = True


def serve(archive: Archive, token: str, host: str, port: int) -> Server:
    """A server ready to run (``serve_forever``), bound to ``host``:``port``."""
    (archive.state / "tmp").mkdir(parents=True, exist_ok=True, mode=0o700)
    handler = type("Handler", (_Handler,), {"archive": archive, "token": token})
    return Server((host, port), handler)
