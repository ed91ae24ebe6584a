"""Telling someone: a healthchecks-style HTTP ping and a notification command.

Both report what happened and never raise: a notification that fails must not turn a good
run into a failed one (the caller logs the returned :class:`Notified`). Neither puts a URL's
path or query (where ping services keep their secret) or the command's arguments in a
message: only the URL's host and the command's program are named.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from orchestrator.errors import HopnhatError
from orchestrator.process import run

#: healthchecks.io's convention: the URL itself for success, /start and /fail
URL_SUFFIX = {"start": "/start", "success": "", "failure": "/fail"}


@dataclass(frozen=True)
class Notified:
    """One notification: by ``url`` or ``command`` (named without secrets), for ``event``,
    whether it worked and what went wrong."""

    channel: str
    target: str
    event: str
    ok: bool
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"channel": self.channel, "target": self.target, "event": self.event,
                "ok": self.ok, "error": self.error}


def url_host(url: str) -> str:
    """What messages may say of a URL: its scheme and host (the path may hold a secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}"


def event_url(url: str, event: str) -> str:
    """``url`` for ``event`` (start, success, failure), healthchecks-style."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/") + URL_SUFFIX[event]
    return parts._replace(path=path or "/").geturl()


def ping_url(url: str, event: str, body: str = "", timeout: float = 10.0) -> Notified:
    """POST ``body`` (a short summary, at most 10 kB as healthchecks keeps) to ``url`` for
    ``event``. Any answer 2xx counts as delivered."""
    import urllib.error  # http.client and email: only a run that pings pays for them
    import urllib.request

    target = url_host(url)
    if urlsplit(url).scheme not in ("http", "https"):
        return Notified("url", target, event, False, "not an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        event_url(url, event), data=body.encode()[:10_000], method="POST",
        headers={"Content-Type": "text/plain; charset=utf-8", "User-Agent": "hopnhat"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            status = int(answer.status)
    except urllib.error.HTTPError as exc:
        return Notified("url", target, event, False, f"HTTP {exc.code}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Notified("url", target, event, False, f"{type(exc).__name__}: {reason}")
    if not 200 <= status < 300:
        return Notified("url", target, event, False, f"HTTP {status}")
    return Notified("url", target, event, True)


def run_command(command: str, event: str, body: str = "",
                env: Mapping[str, str] | None = None, timeout: float = 60.0) -> Notified:
    """Run ``command`` (split like a shell would, run without one) with ``body`` on its
    standard input and ``HOPNHAT_EVENT=<event>`` plus ``env`` in its environment."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return Notified("command", "?", event, False, f"cannot split the command: {exc}")
    if not argv:
        return Notified("command", "?", event, False, "empty command")
    try:
        done = run(argv, env={**(env or {}), "HOPNHAT_EVENT": event}, input=body,
                   timeout=timeout)
    except HopnhatError as exc:
        return Notified("command", argv[0], event, False, str(exc))
    if not done.ok:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or [""]
        return Notified("command", argv[0], event, False,
                        f"exited {done.returncode}: {last[0][:200]}")
    return Notified("command", argv[0], event, True)
