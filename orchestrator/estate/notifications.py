"""``notifications:`` in ``estate.yml``: who is told of what, through Apprise.

```yaml
notifications:
  lang: vi                     # what people receive: vi (default) or en
  timeout: 30s                 # the whole send, every channel of one event at once
  channels:                    # a name → its Apprise URL, from the vault (URLs hold tokens)
    email: {url: {vault: notify_email}}         # mailtos://…
    telegram: {url: {vault: notify_telegram}}   # tgram://bot-token/chat-id
    webhook: {url: {vault: notify_webhook}}     # json://host/path
  routes:                      # an event → the channels told of it
    verify_failed: [email, telegram]
    backup_stale: [email]
    attack_suspected: [email, telegram, webhook]
    drill_failed: [email]
    drill_overdue: [email]
    summary: [email]           # hopnhat summary --send
```

A channel's URL is always a vault reference: Apprise URLs carry bot tokens, webhook keys
and SMTP passwords. A route names only channels of ``channels``; an event without a route
tells no one.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, BeforeValidator, Field, model_validator

from orchestrator.estate.schema import STRICT, PositiveDuration, TimeOfDay
from orchestrator.estate.secret_ref import SecretRef

#: what hopnhat tells people of: a verification found a repository damaged or unreadable
#: (``verify_failed``), a host's latest snapshot older than its tier's RPO
#: (``backup_stale``), signs of an attack on a repository (``attack_suspected``), a drill
#: that failed (``drill_failed``), systems whose drill is overdue (``drill_overdue``), and
#: the morning summary (``summary``)
Event = Literal["verify_failed", "backup_stale", "attack_suspected", "drill_failed",
                "drill_overdue", "summary"]
EVENTS: tuple[str, ...] = get_args(Event)

ChannelName = Annotated[str, Field(min_length=1, max_length=40,
                                   pattern=r"^[a-z][a-z0-9_-]*$")]


class Strict(BaseModel):
    model_config = STRICT


class Channel(Strict):
    """One place people are told: its Apprise URL (``mailtos://``, ``tgram://``,
    ``zalo://``, ``msteams://``/``workflows://``, ``slack://``, ``ntfys://``, ``json://``…),
    read from the vault."""

    url: SecretRef


class Notifications(Strict):
    """The channels and the routes of events to them; ``timeout`` bounds one send."""

    timeout: PositiveDuration = timedelta(seconds=30)
    #: the language of what people receive: Vietnamese (vi) or English (en)
    lang: Literal["vi", "en"] = "vi"
    channels: dict[ChannelName, Channel] = {}
    routes: dict[Event, Annotated[list[ChannelName], Field(min_length=1)]] = {}
    #: when ``hopnhat schedule install``'s summary timer writes the morning summary (and sends
    #: it where ``routes.summary`` says): a time of day in the estate's ``timezone``
    summary_at: TimeOfDay = "07:00"

    @model_validator(mode="after")
    def _routes_name_channels(self) -> Notifications:
        problems = []
        for event, names in self.routes.items():
            unknown = [name for name in names if name not in self.channels]
            if unknown:
                known = ", ".join(sorted(self.channels)) or "none"
                problems.append(f"routes.{event} names no channel of channels: "
                                f"{', '.join(unknown)} (channels: {known})")
            if len(set(names)) != len(names):
                problems.append(f"routes.{event} names a channel twice")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def routed(self, event: str) -> list[str]:
        """The channels ``event`` goes to (none when it has no route)."""
        return list(self.routes.get(event, []))  # type: ignore[call-overload]


def _notify_command_gone(value: object) -> None:
    if value is not None:
        raise ValueError("verification.notify_command is gone: people are told through "
                         "Apprise now — list the channels under notifications.channels "
                         "(their URLs in the vault) and route verify_failed, backup_stale "
                         "and attack_suspected to them under notifications.routes")
    return None


#: ``verification.notify_command`` of older estates: an error that names its successor
NotifyCommandGone = Annotated[None, BeforeValidator(_notify_command_gone)]
