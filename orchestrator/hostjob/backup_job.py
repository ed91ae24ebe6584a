"""The job's entry point: ``backup_job.py --config FILE [--progress]`` — one run, its status
files written, its status document printed last on stdout (the summary ``backup run``
reads). The ``backup_schedule`` role copies this file to ``<library dir>/backup_job.py``, where
the service runs it as ``python3 -S``; the package it imports lies beside it, under
``orchestrator/``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from orchestrator.files import write_atomically
from orchestrator.hostjob.config import ConfigError, JobConfig, load_config
from orchestrator.hostjob.contract import EXIT_CODES, REFUSED
from orchestrator.hostjob.lock import AlreadyRunning
from orchestrator.hostjob.run import backup
from orchestrator.hostjob.space import repository_space
from orchestrator.hostjob.status import Status
from orchestrator.hostjob.textfile import textfile

log = logging.getLogger("hopnhat.backup")


def write_status(config: JobConfig, status: Status) -> None:
    """The status file (JSON) and the textfile, each replaced atomically."""
    write_atomically(config.status_file,
                     json.dumps(status.as_dict(), indent=2, ensure_ascii=False) + "\n")
    write_atomically(config.textfile, textfile(status))


def _progress_printer() -> Callable[[dict[str, Any]], None]:
    last = [0.0]

    def show(message: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0:
            last[0] = now
            done = float(message.get("percent_done") or 0.0)
            print(f"progress {done * 100:.1f}% files {message.get('files_done', 0)} "
                  f"bytes {message.get('bytes_done', 0)}", file=sys.stderr, flush=True)
    return show


def main(argv: Sequence[str] | None = None) -> int:
    """``backup_job.py --config FILE [--progress]``: one run; its status JSON on stdout.
    Exit 0 ok, 3 partial, 1 failed or refused (another run holds the lock), 2 bad config."""
    parser = argparse.ArgumentParser(
        prog="backup_job.py", description="One run of hopnhat's backup of a system on this host.")
    parser.add_argument("--config", required=True, type=Path, help="the job's JSON config")
    parser.add_argument("--progress", action="store_true",
                        help="print restic's progress to stderr about once a second")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="hopnhat-backup: %(levelname)s %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        log.error("%s", exc)
        return exc.exit_code
    try:
        status = backup(config, on_progress=_progress_printer() if args.progress else None,
                        read_space=repository_space)
    except AlreadyRunning as exc:
        log.error("%s: %s", config.system, exc)
        print(json.dumps({"system": config.system, "host": config.host, "result": REFUSED,
                          "exit_code": EXIT_CODES[REFUSED],
                          "error": {"class": type(exc).__name__, "message": str(exc)}}))
        return EXIT_CODES[REFUSED]
    try:
        write_status(config, status)
    except OSError as exc:
        log.error("%s: cannot write the status files: %s", config.system, exc)
        status.fail("status", exc)
    if status.error:
        log.error("%s: %s at %s: %s: %s", config.system, status.result, status.stage,
                  status.error["class"], status.error["message"])
    else:
        log.info("%s: %s in %.1f s", config.system, status.result, status.duration_seconds)
    print(json.dumps(status.as_dict(), ensure_ascii=False))
    return status.exit_code


if __name__ == "__main__":
    sys.exit(main())
