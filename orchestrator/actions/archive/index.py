"""``archive index``: build (or rebuild) a system's catalogue from its repository, read from
the control host.

Which snapshots: for a retired system, those its retirement kept (tagged ``archived``) of the
hosts it retired; for any other system, every snapshot in its repository. The SHA-256 of a
file version comes from the retirement's manifest (the final snapshots) when there is one.
The catalogue's own SHA-256 goes to the ledger, with the run (kind ``archive-index``).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from orchestrator.actions.archive import catalogue
from orchestrator.actions.archive.catalogue import Built, FileEntry, KeptSnapshot
from orchestrator.actions.migrate.manifest import mtime_ns
from orchestrator.adapters.restic import Restic
from orchestrator.adapters.restic_results import Snapshot
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths

KIND = "archive-index"
ARCHIVED = "archived"


def kept(snapshots: list[Snapshot], hosts: tuple[str, ...] | None) -> list[KeptSnapshot]:
    """The snapshots a catalogue lists, oldest first: of ``hosts`` and tagged ``archived``
    (a retirement's), or every one when ``hosts`` is None."""
    chosen = [s for s in snapshots
              if hosts is None or (s.hostname in hosts and ARCHIVED in s.tags)]
    return [KeptSnapshot(s.id, s.time.isoformat().replace("+00:00", "Z"), s.hostname,
                         tuple(s.tags)) for s in sorted(chosen, key=lambda s: s.time)]


def files_of(restic: Restic) -> Callable[[KeptSnapshot], Iterator[FileEntry]]:
    def each(snap: KeptSnapshot) -> Iterator[FileEntry]:
        for node in restic.ls(snap.id):
            if node.type == "file":
                yield FileEntry(node.path, node.size or 0,
                                mtime_ns(node.mtime) if node.mtime else 0)
    return each


def manifest_hashes(manifest: Path | None) -> dict[tuple[str, str, int, int], str]:
    """(host, path, size, mtime_ns) → SHA-256 of a stored manifest's files."""
    if manifest is None or not manifest.is_file():
        return {}
    out: dict[tuple[str, str, int, int], str] = {}
    with gzip.open(manifest, "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if d.get("type") == "f" and d.get("sha256"):
                out[(d["vm"], d["path"], int(d.get("size", 0)), int(d["mtime_ns"]))] = \
                    d["sha256"]
    return out


def index(paths: Paths, ledger: Ledger, code: str, restic: Restic, *,
          hosts: tuple[str, ...] | None, manifest: Path | None,
          on_snapshot: Callable[[KeptSnapshot, int], None] | None = None,
          params: dict[str, Any] | None = None) -> Built:
    """Build system ``code``'s catalogue (see the module's text); record its hash."""
    run_id = ledger.start(KIND, paths.estate.id, {"system": code, **(params or {})})
    try:
        snapshots = kept(restic.snapshots(), hosts)
        built = catalogue.build(
            catalogue.location(paths.state, paths.estate.id, code), estate=paths.estate.id,
            system=code, snapshots=snapshots, files_of=files_of(restic),
            hashes=manifest_hashes(manifest), on_snapshot=on_snapshot)
    except BaseException as exc:
        ledger.finish(run_id, "failed", {"error": str(exc)[:2000]})
        raise
    catalogue.record(ledger, paths.estate.id, code, built)
    ledger.finish(run_id, "passed", built.as_dict())
    return built
