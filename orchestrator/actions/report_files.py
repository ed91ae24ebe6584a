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

import os
import stat
from pathlib import Path

REPORT_MODE = 0o640
REPORT_FOLDER_MODE = 0o750


def evidence_folder(folder: Path) -> Path:
    """Make ``folder`` (``<state>/evidence/<run>``) and its parent 0750, created so or
    narrowed to it; out: ``folder``. Raises OSError."""
    folder.mkdir(mode=REPORT_FOLDER_MODE, parents=True, exist_ok=True)
    for each in (folder.parent, folder):
        if stat.S_IMODE(each.stat().st_mode) != REPORT_FOLDER_MODE:
            each.chmod(REPORT_FOLDER_MODE)
    return folder


def write_report_file(path: Path, data: bytes | str) -> None:
    """Write ``data`` (text as UTF-8) to ``path``, 0640 from its creation whatever the
    umask, replacing its content (and mode) if it exists; a symlink there is refused
    (OSError)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 REPORT_MODE)
    try:
        os.fchmod(fd, REPORT_MODE)  # the umask may have narrowed it; an old file had its own
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
