"""A healthchecks-style ping (healthchecks.io, Uptime Kuma's push monitors, Cronitor…): the
nightly job says it started, succeeded or failed, and the service raises the alarm when it
does not hear. Not a notification to people — those go through Apprise
(:mod:`orchestrator.adapters.notify`).

:func:`ping_url` reports what happened and never raises; it names only the URL's scheme and
host (ping services keep their secret in the path).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from orchestrator.adapters.notify import Sent

#: healthchecks.io's convention: the URL itself for success, /start and /fail
URL_SUFFIX = {"start": "/start", "success": "", "failure": "/fail"}


def url_host(url: str) -> str:
    """What messages may say of a URL: its scheme and host (the path may hold a secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}"


def event_url(url: str, event: str) -> str:
    """``url`` for ``event`` (start, success, failure), healthchecks-style."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/") + URL_SUFFIX[event]
    return parts._replace(path=path or "/").geturl()


def ping_url(url: str, event: str, body: str = "", timeout: float = 10.0) -> Sent:
    """POST ``body`` (a short summary, at most 10 kB as healthchecks keeps) to ``url`` for
    ``event``; the result's channel is ``ping``. Any answer 2xx counts as delivered."""
    import urllib.error  # http.client and email: only a run that pings pays for them
    import urllib.request

    target = url_host(url)
    if urlsplit(url).scheme not in ("http", "https"):
        return Sent("ping", target, event, False, "not an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        event_url(url, event), data=body.encode()[:10_000], method="POST",
        headers={"Content-Type": "text/plain; charset=utf-8", "User-Agent": "hopnhat"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            status = int(answer.status)
    except urllib.error.HTTPError as exc:
        return Sent("ping", target, event, False, f"HTTP {exc.code}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Sent("ping", target, event, False, f"{type(exc).__name__}: {reason}")
    if not 200 <= status < 300:
        return Sent("ping", target, event, False, f"HTTP {status}")
    return Sent("ping", target, event, True)
