"""The one door to subprocesses.

Every external program hopnhat runs goes through :func:`run` (or :func:`spawn` for
long-lived lab daemons): argv lists, never shell strings; secrets travel through files
or the environment, never through argv.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import CommandError


@dataclass(frozen=True)
class Completed:
    """What a finished command returned."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _environment(env: Mapping[str, str] | None, inherit: bool) -> dict[str, str]:
    merged = dict(os.environ) if inherit else {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if env:
        merged.update(env)
    return merged


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 600.0,
    input: str | None = None,
    cwd: str | Path | None = None,
    check: bool = False,
    inherit_env: bool = True,
) -> Completed:
    """Run ``argv`` to completion and return its output as text.

    Raises :class:`CommandError` when the program is missing, the timeout passes, or
    ``check`` is set and the exit code is not 0. The message names the program only,
    never the environment (which may carry secrets).
    """
    args = tuple(str(a) for a in argv)
    try:
        proc = subprocess.run(  # argv list, no shell
            args,
            env=_environment(env, inherit_env),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            check=False,
        )
    except FileNotFoundError as exc:
        raise CommandError(f"{args[0]}: program not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"{args[0]}: no answer within {timeout:.0f} s") from exc
    done = Completed(args, proc.returncode, proc.stdout, proc.stderr)
    if check and not done.ok:
        tail = done.stderr.strip().splitlines()[-1:] or [""]
        raise CommandError(f"{args[0]} exited {done.returncode}: {tail[0]}")
    return done


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    cwd: str | Path | None = None,
    inherit_env: bool = True,
) -> subprocess.Popen[bytes]:
    """Start a long-lived process in its own session (so a terminal's Ctrl-C does not
    reach it), output to ``log`` (or discarded). The caller records its PID."""
    args = [str(a) for a in argv]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(  # argv list, no shell
            args,
            env=_environment(env, inherit_env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise CommandError(f"{args[0]}: program not found") from exc
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
