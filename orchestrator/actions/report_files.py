"""How reports and their evidence are written to disk: 0640 from the moment they exist,
in folders 0750 (``<state>/evidence/<run>``).

They hold probe output from restored data, file lists and hashes of systems: never
readable by others. Group-readable, because a report is made to be shown (an auditor, a
team given the owner's group); the folders 0750 so that such a group can enter them, which
makes the file's group bit mean something. The state folder above them stays 0700 (keys,
the ledger, the vault password are 0600 in it): opening evidence to a group is a choice
made on the state folder (``chmod g+x``), and it then shows reports and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path
from typing import Any

from orchestrator.files import write_atomically

REPORT_MODE = 0o640
REPORT_FOLDER_MODE = 0o750
EVIDENCE = "evidence.json"


def evidence_folder(folder: Path) -> Path:
    """Make ``folder`` (``<state>/evidence/<run>``) and its parent 0750, created so or
    narrowed to it; out: ``folder``. Raises OSError."""
    folder.mkdir(mode=REPORT_FOLDER_MODE, parents=True, exist_ok=True)
    for each in (folder.parent, folder):
        if stat.S_IMODE(each.stat().st_mode) != REPORT_FOLDER_MODE:
            each.chmod(REPORT_FOLDER_MODE)
    return folder


def write_report_file(path: Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` (text as UTF-8), whole (:func:`write_atomically`) and
    0640 from its creation whatever the umask; a link there is replaced, never followed.
    Raises OSError."""
    write_atomically(path, data, REPORT_MODE)


def canonical(data: Any) -> bytes:
    """The canonical bytes of a JSON document (what its SHA-256 is of)."""
    return (json.dumps(data, ensure_ascii=False, sort_keys=True, indent=2, default=str)
            + "\n").encode()


def write_evidence_files(folder: Path, doc: Any) -> tuple[str, Path]:
    """``evidence.json`` (the canonical bytes of ``doc``) and ``evidence.json.sha256`` beside
    it, in sha256sum's format, in ``folder``. Out: the hash and the evidence file."""
    data = canonical(doc)
    sha256 = hashlib.sha256(data).hexdigest()
    path = folder / EVIDENCE
    write_report_file(path, data)
    write_report_file(folder / f"{EVIDENCE}.sha256", f"{sha256}  {EVIDENCE}\n")
    return sha256, path
