"""The archive catalogue, its queries and retrieval, without a repository (restic's listing and
``dump`` stand in as functions)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from orchestrator.actions.archive import catalogue, search
from orchestrator.actions.archive import get as archive_get
from orchestrator.actions.archive.catalogue import FileEntry, KeptSnapshot
from orchestrator.ledger import Ledger

NS = 1_000_000_000
OLD = KeptSnapshot("a" * 64, "2023-01-01T00:00:00Z", "qlvbqn-db-01", ("archived",))
FINAL = KeptSnapshot("b" * 64, "2024-06-01T00:00:00Z", "qlvbqn-db-01", ("archived", "final"))
DECISION = "/srv/qlvb/Sở Y tế/Quyết định/qd-118-2023.pdf"
SCRIPT = "/srv/qlvb/cong-van/<script>alert(1)</script>.txt"
CONTENT = {DECISION: b"decision 118", SCRIPT: b"<b>x</b>", "/srv/qlvb/new.odt": b"new!"}


def _files(snap: KeptSnapshot) -> Iterator[FileEntry]:
    yield FileEntry(DECISION, len(CONTENT[DECISION]), 1_690_000_000 * NS)  # July 2023
    if snap is OLD:
        yield FileEntry(SCRIPT, 3, 1_600_000_000 * NS)
    else:
        yield FileEntry(SCRIPT, len(CONTENT[SCRIPT]), 1_650_000_000 * NS)
        yield FileEntry("/srv/qlvb/new.odt", 4, 1_710_000_000 * NS)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def built(tmp_path: Path) -> Iterator[tuple[Ledger, Path]]:
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        target = catalogue.location(tmp_path, "danang", "qlvbqn")
        hashes = {("qlvbqn-db-01", p, len(c), m): _sha(c) for p, c, m in [
            (DECISION, CONTENT[DECISION], 1_690_000_000 * NS),
            (SCRIPT, CONTENT[SCRIPT], 1_650_000_000 * NS),
            ("/srv/qlvb/new.odt", CONTENT["/srv/qlvb/new.odt"], 1_710_000_000 * NS)]}
        done = catalogue.build(target, estate="danang", system="qlvbqn", snapshots=[OLD, FINAL],
                               files_of=_files, hashes=hashes)
        assert (done.snapshots, done.versions, done.entries) == (2, 4, 5)
        assert target.stat().st_mode & 0o777 == 0o600
        assert target.parent.stat().st_mode & 0o777 == 0o700
        catalogue.record(ledger, "danang", "qlvbqn", done)
        yield ledger, tmp_path


def _find(built: tuple[Ledger, Path], text: str, year: int | None = None,
          limit: int = 50) -> list[search.Match]:
    ledger, state = built
    db = catalogue.open_checked(ledger, state, "danang", "qlvbqn")
    try:
        return search.search(db, "qlvbqn", search.parse(text, year), limit=limit,
                             zone="Asia/Ho_Chi_Minh")[0]
    finally:
        db.close()


@pytest.mark.parametrize(("query", "expected"), [
    ("quyet dinh 118", [DECISION]),  # no diacritics, any case
    ("QUYẾT ĐỊNH", [DECISION]),
    ("so y te", [DECISION]),
    ("*.pdf", [DECISION]),
    ("qd-11*", [DECISION]),
    ("*/cong-van/*", [SCRIPT, SCRIPT]),  # both versions, newest first
    ("/srv/qlvb/cong-van", [SCRIPT, SCRIPT]),
    ("/srv/qlvb/cong", []),  # a prefix is a folder or a file, not half a name
    ("/srv/qlvb/new.odt", ["/srv/qlvb/new.odt"]),
    ("script alert", [SCRIPT, SCRIPT]),
    ("nothing-like-this", []),
    ("*118*", [DECISION]),  # a word cut on both sides: the words that contain it
    ("*zzz*", []),  # no word contains it: answered from the vocabulary alone
    ("q[a-d]-118*", [DECISION]),
])
def test_queries_find_words_globs_and_prefixes(built: tuple[Ledger, Path], query: str,
                                               expected: list[str]) -> None:
    assert [m.path for m in _find(built, query)] == expected


def test_a_globs_words_are_whole_begun_or_cut() -> None:
    assert search.glob_terms("qd-118-*.pdf") == (("qd", "118", "pdf"), (), ())
    assert search.glob_terms("qd-11*") == (("qd",), ("11",), ())
    assert search.glob_terms("*118*") == ((), (), ("118",))
    assert search.glob_terms("[qx]d-1?8.pdf") == (("pdf",), ("1",), ("d", "8"))


def test_a_match_names_its_snapshot_and_hash_and_year_filters(
        built: tuple[Ledger, Path]) -> None:
    [new, old] = _find(built, "alert")
    assert new.snapshot == FINAL.id and new.final and new.sha256 == _sha(CONTENT[SCRIPT])
    assert old.snapshot == OLD.id and not old.final and old.sha256 is None
    [decision] = _find(built, "qd", year=2023)
    assert decision.versions_in == 2  # in both snapshots, one version
    assert _find(built, "qd", year=2024) == []
    assert _find(built, "qlvb", year=2019) == []  # no file of that year at all
    assert len(_find(built, "qlvb", limit=2)) == 2


@pytest.mark.parametrize(("query", "says"), [
    ("", "empty query"), ("   ", "empty query"), ("--- ...", "no word"),
    ("[abc", "no ']'"), ("/srv/../etc", "'..'"), ("a\x1b[2Jb", "control character"),
    ("x" * 501, "at most 500"),
])
def test_a_malformed_query_is_named_and_exit_2(query: str, says: str) -> None:
    with pytest.raises(search.QueryError, match=says.replace("[", r"\[")) as caught:
        search.parse(query)
    assert caught.value.exit_code == 2


def test_a_changed_catalogue_is_refused_until_rebuilt(built: tuple[Ledger, Path]) -> None:
    ledger, state = built
    path = catalogue.location(state, "danang", "qlvbqn")
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(catalogue.CatalogueError, match="was changed since it was built"):
        catalogue.open_checked(ledger, state, "danang", "qlvbqn")
    with pytest.raises(catalogue.CatalogueError, match="was never built"):
        catalogue.open_checked(ledger, state, "danang", "other")


def test_a_failed_build_leaves_the_previous_catalogue(built: tuple[Ledger, Path]) -> None:
    ledger, state = built
    path = catalogue.location(state, "danang", "qlvbqn")
    before = path.read_bytes()

    def broken(snap: KeptSnapshot) -> Iterator[FileEntry]:
        yield FileEntry("/x", 1, 0)
        raise OSError("restic ls: connection lost")
    with pytest.raises(OSError, match="connection lost"):
        catalogue.build(path, estate="danang", system="qlvbqn", snapshots=[OLD],
                        files_of=broken)
    assert path.read_bytes() == before and list(path.parent.iterdir()) == [path]
    catalogue.open_checked(ledger, state, "danang", "qlvbqn").close()


def _dump(content: dict[str, bytes]) -> archive_get.Dump:
    def dump(snapshot: str, path: str, sink: BinaryIO) -> int:
        del snapshot
        sink.write(content[path])
        return len(content[path])
    return dump


def _resolve(built: tuple[Ledger, Path], to: Path, *paths: str,
             snapshot: str | None = None) -> list[archive_get.Wanted]:
    ledger, state = built
    db = catalogue.open_checked(ledger, state, "danang", "qlvbqn")
    try:
        return archive_get.resolve(db, "qlvbqn", paths, to, snapshot=snapshot)
    finally:
        db.close()


def test_get_leaves_a_file_only_when_it_matches_and_records_each(
        built: tuple[Ledger, Path], tmp_path: Path) -> None:
    ledger, _ = built
    to = tmp_path / "to"
    to.mkdir()
    wanted = _resolve(built, to, DECISION, "/srv/qlvb/new.odt")
    assert [w.snapshot for w in wanted] == [FINAL.id, FINAL.id]
    tampered = {**CONTENT, "/srv/qlvb/new.odt": b"NEW!"}  # same size, other bytes
    result = archive_get.get(ledger, "danang", "qlvbqn", wanted, _dump(tampered), to=to)
    assert [f.result for f in result.files] == ["ok", "refused"] and result.exit_code == 1
    assert (to / DECISION[1:]).read_bytes() == CONTENT[DECISION]
    assert (to / DECISION[1:]).stat().st_mtime_ns == 1_690_000_000 * NS
    assert not (to / "srv/qlvb/new.odt").exists()
    assert [p.name for p in (to / "srv/qlvb").iterdir() if p.is_file()] == []  # no leftover
    [run] = ledger.runs("archive-get")
    assert run.params["paths"] == [DECISION, "/srv/qlvb/new.odt"] and run.status == "failed"
    assert [e["kind"] for e in ledger.events(run.id)] == ["ok", "refused"]


def test_get_of_an_older_version_and_the_wrong_ways(built: tuple[Ledger, Path],
                                                     tmp_path: Path) -> None:
    to = tmp_path / "to"
    to.mkdir()
    [old] = _resolve(built, to, SCRIPT, snapshot="a" * 8)
    assert (old.snapshot, old.size, old.sha256) == (OLD.id, 3, None)
    for paths, snapshot, says in [
            (("/etc/shadow",), None, "no such file"),
            (("/srv/qlvb/new.odt",), "a" * 8, "in snapshot aaaaaaaa"),
            (("srv/qlvb/new.odt",), None, "not a plain absolute path"),
            (("/srv/qlvb/../../etc/passwd",), None, "'..'"),
            ((DECISION,), "zz", "8 hex digits"),
            ((DECISION,), "c" * 8, "no kept snapshot")]:
        with pytest.raises(archive_get.GetError, match=says):
            _resolve(built, to, *paths, snapshot=snapshot)
    (to / "srv").symlink_to(tmp_path)  # a link in the way leads out of --to
    with pytest.raises(archive_get.GetError, match="outside --to"):
        _resolve(built, to, DECISION)


def test_a_dump_that_fails_leaves_nothing(built: tuple[Ledger, Path], tmp_path: Path) -> None:
    from orchestrator.errors import ResticError

    ledger, _ = built
    to = tmp_path / "to"
    to.mkdir()
    [wanted] = _resolve(built, to, DECISION)

    def broken(snapshot: str, path: str, sink: BinaryIO) -> int:
        sink.write(b"half")
        raise ResticError("restic dump: ciphertext verification failed")
    result = archive_get.get(ledger, "danang", "qlvbqn", [wanted], broken, to=to)
    assert result.files[0].result == "failed" and "ciphertext" in result.files[0].detail
    assert [p for p in to.rglob("*") if p.is_file()] == []


def test_paths_from_a_repository_reach_the_terminal_harmless() -> None:
    from orchestrator.cli.common import shown

    assert shown("/srv/a\x1b[2J\x07[red]b[/]") == "/srv/a\\x1b[2J\\x07\\[red]b\\[/]"


@pytest.fixture
def page(built: tuple[Ledger, Path]) -> Iterator[tuple[str, Ledger]]:
    import threading
    from contextlib import contextmanager

    from orchestrator.actions.archive.serve import Archive, serve

    ledger, state = built
    content = {**CONTENT, "/srv/qlvb/new.odt": b"NEW!"}  # tampered: refused

    @contextmanager
    def restic_for(system: str) -> Iterator[archive_get.Dump]:
        yield _dump(content)
    server = serve(Archive(state, "danang", state / "ledger.sqlite", "Asia/Ho_Chi_Minh",
                           ("qlvbqn",), restic_for), "s3cret-token", "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", ledger
    finally:
        server.shutdown()
        server.server_close()


def _http(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_the_page_needs_the_token_escapes_names_and_downloads_checked_files(
        page: tuple[str, Ledger]) -> None:
    from urllib.parse import quote

    base, ledger = page
    assert _http(f"{base}/?q=alert")[0] == 401
    assert _http(f"{base}/?q=alert&token=wrong")[0] == 401
    assert _http(f"{base}/file?system=qlvbqn&path={quote(DECISION)}")[0] == 401
    status, headers, body = _http(f"{base}/?q=alert&token=s3cret-token")
    assert status == 200 and "HttpOnly" in headers["Set-Cookie"]
    html = body.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert "Tra cứu hồ sơ lưu trữ" in html and 'id="lang">English</a>' in html
    cookie = {"Cookie": "hopnhat_archive=s3cret-token"}
    english = _http(f"{base}/?q=quyet+dinh&lang=en", cookie)[2].decode()
    assert "Archive of retired systems" in english and "qd-118-2023.pdf" in english
    assert 'id="lang">Tiếng Việt</a>' in english
    status, headers, body = _http(
        f"{base}/file?system=qlvbqn&path={quote(DECISION)}", cookie)
    assert status == 200 and body == CONTENT[DECISION]
    assert headers["Content-Disposition"] == "attachment; filename*=UTF-8''qd-118-2023.pdf"
    for bad, code in [(f"/file?system=qlvbqn&path={quote('/etc/passwd')}", 400),
                      (f"/file?system=qlvbqn&path={quote('/srv/qlvb/../../etc/passwd')}", 400),
                      (f"/file?system=other&path={quote(DECISION)}", 400),
                      ("/../../etc/passwd", 404),
                      (f"/file?system=qlvbqn&path={quote('/srv/qlvb/new.odt')}", 500),
                      ("/?q=%5Babc", 400)]:
        status, _, body = _http(base + bad, cookie)
        assert status == code, (bad, status)
        assert b"NEW!" not in body
    runs = ledger.runs("archive-get")
    assert [r.status for r in runs] == ["failed", "passed"]
    assert runs[1].params["via"].startswith("archive serve, for 127.0.0.1")


def test_a_year_is_the_estates_local_year_at_its_edges(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    edge = int(datetime(2022, 12, 31, 17, 30, tzinfo=UTC).timestamp()) * NS  # 00:30 +07
    target = tmp_path / "edge.sqlite"
    catalogue.build(target, estate="e", system="s", snapshots=[FINAL],
                    files_of=lambda snap: iter([FileEntry("/srv/new-year.txt", 1, edge)]))
    db = sqlite3.connect(target)
    try:
        for year, zone, found in [(2023, "Asia/Ho_Chi_Minh", 1), (2022, "Asia/Ho_Chi_Minh", 0),
                                  (2022, "UTC", 1), (2023, "UTC", 0)]:
            hits, _ = search.search(db, "s", search.parse("new year", year), zone=zone)
            assert len(hits) == found, (year, zone)
    finally:
        db.close()
