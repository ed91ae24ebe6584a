"""Files replaced whole: :func:`write_atomically` is the one way hopnhat writes a file that
something else may read at any moment — a report, a unit, the vault, a cache, the backup job's
status file and textfile on each host.

Standard library only: the ``backup_schedule`` role copies this module to each host with the
backup job (``python3 -S``), and every layer of hopnhat may import it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8): a reader sees the old file or
    the new one, whole, never a part of either.

    The data goes to a new temporary file in the same folder (a name no other writer can
    hold: created exclusively, never through a link, readable by its owner only), is flushed
    to the disk (``fsync``) and gets ``mode`` — exactly, whatever the umask — before one
    rename puts it in place. Anything that fails removes the temporary file and is raised
    (OSError). A missing folder is made with the umask's mode: a caller that wants a private
    folder makes it first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
