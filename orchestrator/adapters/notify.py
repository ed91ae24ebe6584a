"""Telling people, through Apprise: the one door to it.

:func:`send` hands one message to named channels (each an Apprise URL: ``mailtos://``,
``tgram://``, ``zalo://``, ``workflows://``/``msteams://``, ``slack://``, ``ntfys://``,
``json://``…) at once and returns what became of each as :class:`Sent`. It never raises:
a channel that fails must not turn a good run into a failed one, and the caller reports
it. Channels whose own format is HTML (e-mail) get the HTML body when one is given —
Apprise adds its plain-text part — the others the text.

Apprise URLs hold tokens and passwords: nothing this module returns or logs names more of
a URL than its scheme, and every reason for a failure has each part of the URL (host,
user, password, path, query values) blotted out before it leaves. Apprise's own logger
is kept from the console for the same reason (its messages reach the caller redacted,
as a channel's ``error``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from apprise import Apprise

log = logging.getLogger("hopnhat.notify")

#: what stands in for a secret in a message
HIDDEN = "***"
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]{0,19})://", re.IGNORECASE)
_SHORTEST_SECRET = 3  # shorter parts of a URL ("a", "to") are words, not secrets


@dataclass(frozen=True)
class Sent:
    """One channel's delivery of one event: the channel's name, its ``target`` as messages
    may show it (the URL's scheme only, ``mailtos://…``), whether it worked and, when not,
    why (redacted)."""

    channel: str
    target: str
    event: str
    ok: bool
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"channel": self.channel, "target": self.target, "event": self.event,
                "ok": self.ok, "error": self.error}


def shown(url: str) -> str:
    """What may be shown of an Apprise ``url``: its scheme (``tgram://…``), or ``?://…``
    when it has none worth the name."""
    match = _SCHEME.match(url.strip())
    return f"{match.group(1).lower()}://…" if match else "?://…"


def secret_parts(url: str) -> list[str]:
    """Every part of ``url`` that may be a secret (the URL itself, its host, user,
    password, path segments and query values, as written and %-decoded), longest first."""
    parts = {url, url.strip()}
    try:
        split = urlsplit(url.strip())
        pieces = [split.netloc, split.hostname or "", split.username or "",
                  split.password or "", split.path, *split.path.split("/"),
                  split.query, *(v for _, v in parse_qsl(split.query))]
    except ValueError:  # not even a URL: only the whole of it is known
        pieces = []
    for piece in pieces:
        parts.update((piece, unquote(piece)))
    return sorted((p for p in parts if len(p) >= _SHORTEST_SECRET), key=len, reverse=True)


def redact(text: str, urls: Iterable[str]) -> str:
    """``text`` with every :func:`secret_parts` of each of ``urls`` replaced by ``***``."""
    for url in urls:
        for part in secret_parts(url):
            text = text.replace(part, HIDDEN)
    return text


def _no_debug(record: logging.LogRecord) -> bool:
    return record.levelno > logging.DEBUG


def _quiet_apprise() -> None:
    """Apprise's logger keeps to itself (its messages can name hosts, chat ids, tokens),
    and the debug lines of the HTTP library under it (which name each URL's path, where
    webhooks keep their keys) are dropped."""
    logger = logging.getLogger("apprise")
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    pool = logging.getLogger("urllib3.connectionpool")
    if _no_debug not in pool.filters:
        pool.addFilter(_no_debug)


def _apprise() -> Apprise:
    import apprise  # only a run that tells someone pays for importing it

    _quiet_apprise()
    # memory only, said outright: Apprise's library default (auto, no path) keeps nothing
    # on disk today; its command line keeps plugins' state (tokens) in files
    asset = apprise.AppriseAsset(app_id="hopnhat", app_desc="hopnhat",
                                 storage_mode="memory")
    return apprise.Apprise(asset=asset)


def _reason(service: Any, timeout: float) -> str:
    """Why one Apprise service result failed: its last warning or error, else its status."""
    from apprise.result import AppriseResultStatus

    if service.status == AppriseResultStatus.TIMEOUT:
        return f"timed out after {timeout:g} s"
    messages = [e.message for e in service.logs() if e.level in ("WARNING", "ERROR")]
    return messages[-1] if messages else f"not delivered ({service.status.name.lower()})"


@dataclass
class _Batch:
    """The channels sent one body format in one Apprise call."""

    apprise: Apprise
    names: list[str]


def _batches(channels: Mapping[str, str], with_html: bool
             ) -> tuple[dict[str, _Batch], dict[str, str]]:
    """The channels split by the body they get (``html``, ``text``), and those Apprise
    cannot use (name → reason)."""
    from apprise import NotifyFormat

    batches = {"html": _Batch(_apprise(), []), "text": _Batch(_apprise(), [])}
    unusable: dict[str, str] = {}
    for name, url in channels.items():
        plugin = batches["text"].apprise.instantiate(url, asset=batches["text"].apprise.asset,
                                                     tag=name)
        if plugin is None:
            unusable[name] = f"not a URL Apprise can use ({shown(url)})"
            continue
        kind = "html" if with_html and plugin.resolve_format(None) == NotifyFormat.HTML \
            else "text"
        batches[kind].apprise.add(plugin)
        batches[kind].names.append(name)
    return batches, unusable


def _deliver(batch: _Batch, title: str, body: str, body_format: str,
             attachments: Sequence[Path], timeout: float) -> dict[str, str | None]:
    """Send ``body`` to every channel of ``batch``: channel → None (delivered) or why not."""
    outcome: dict[str, str | None] = dict.fromkeys(batch.names, "not sent")
    result = batch.apprise.notify(body=body, title=title, body_format=body_format,
                                  attach=[str(p) for p in attachments] or None,
                                  timeout=timeout)
    for service in result:
        for name in service.tag:
            if name in outcome:
                outcome[name] = None if bool(service) else _reason(service, timeout)
    return outcome


def send(channels: Mapping[str, str], event: str, title: str, body: str, *,
         html: str | None = None, attachments: Sequence[Path] = (),
         timeout: float = 30.0) -> tuple[Sent, ...]:
    """Tell every channel of ``channels`` (its name → its Apprise URL) ``title`` and
    ``body`` (plain text; ``html`` for the channels that show HTML) with ``attachments``,
    all at once, within ``timeout`` seconds. One :class:`Sent` per channel, in the order
    given; never raises, never returns or logs a secret."""
    urls = list(channels.values())
    done: dict[str, str | None] = {}
    try:
        batches, unusable = _batches(channels, html is not None)
        done.update(unusable)
        for kind, batch in batches.items():
            if batch.names:
                done.update(_deliver(batch, title, html if kind == "html" and html else body,
                                     kind, attachments, timeout))
    except Exception as exc:  # Apprise is a library of many plugins: none may stop a run
        reason = f"{type(exc).__name__}: {exc}"
        done.update({name: reason for name in channels if name not in done})
    sent = []
    for name, url in channels.items():
        error = done.get(name, "not sent")
        error = None if error is None else redact(error, urls)
        sent.append(Sent(name, shown(url), event, error is None, error))
        if error is not None:
            log.warning("notification of %s by channel %s (%s) failed: %s", event, name,
                        shown(url), error)
    return tuple(sent)
