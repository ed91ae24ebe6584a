"""Typed errors. Each carries the exit code the CLI returns and a short message.

Messages name the file, key, host or repository concerned and never a secret.
Exit codes (every command): 0 ok, 1 failure, 2 bad input (the estate, the vault, an
option's value), 3 partial, 64 usage (the command line itself: an unknown command or
option, a missing one — sysexits' EX_USAGE, so a script tells a typo from an invalid
estate).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_PARTIAL = 3
EXIT_USAGE = 64


class HopnhatError(Exception):
    """Base of every expected failure; the top-level handler prints ``str(self)``."""

    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class EstateError(HopnhatError):
    """The estate (inventory/) is unreadable or invalid.

    ``problems`` holds every problem found, each ``(file, key path, message)``.
    """

    exit_code = EXIT_BAD_INPUT

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        self.problems = problems
        lines = [f"{f}: at '{k}': {m}" if k else f"{f}: {m}" for f, k, m in problems]
        super().__init__(f"the estate has {len(problems)} problem(s):\n" + "\n".join(lines))


class SecretError(HopnhatError):
    """A vault or secret could not be read (never includes the secret itself)."""

    exit_code = EXIT_BAD_INPUT


class PlanError(HopnhatError):
    """A plan was refused (capacity, foreign VM, IP conflict, …)."""

    exit_code = EXIT_FAILURE


class VSphereError(HopnhatError):
    """vCenter could not be reached or refused an operation."""

    exit_code = EXIT_FAILURE


class ResticError(HopnhatError):
    """restic failed; subclasses classify why."""

    exit_code = EXIT_FAILURE


class SSHError(HopnhatError):
    """An SSH connection or remote command failed."""

    exit_code = EXIT_FAILURE


class AnsibleError(HopnhatError):
    """An ansible-runner run could not start or failed."""

    exit_code = EXIT_FAILURE


class LabError(HopnhatError):
    """The embedded lab could not be started, inspected or stopped."""

    exit_code = EXIT_FAILURE


class EstateLockedError(HopnhatError):
    """Another command that changes the world holds the estate lock (``<state>/lock``) and
    did not let go within ``--lock-timeout``; the message names its holder (operator,
    command, PID, host, since). Exit 1: nothing was done — a failure to run, not bad input
    (the same command succeeds once the holder ends)."""

    exit_code = EXIT_FAILURE


class CommandError(HopnhatError):
    """A subprocess could not be started, timed out, or failed when it had to succeed."""

    exit_code = EXIT_FAILURE
