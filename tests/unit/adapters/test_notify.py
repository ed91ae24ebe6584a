"""The Apprise door: each channel's outcome as data, a failing channel reported and never
raised, HTML to the channels that show it, and no part of a URL in anything it returns or
logs. Real Apprise objects and real receivers (an SMTP server and an HTTP endpoint on free
ports): nothing of hopnhat's is faked."""

from __future__ import annotations

import json
import logging

import pytest

from orchestrator.adapters.notify import HIDDEN, redact, secret_parts, send, shown
from tests.helpers import MailReceiver, WebhookReceiver, free_port


def test_a_message_reaches_a_mailbox_and_a_webhook_at_once() -> None:
    with MailReceiver() as mail, WebhookReceiver() as hook:
        sent = send({"email": mail.mailto(), "hook": f"json://{hook.url[7:]}/in"},
                    "verify_failed", "Tiêu đề", "dòng một\ndòng hai",
                    html="<p>dòng <b>một</b></p>")
    assert [(s.channel, s.target, s.event, s.ok, s.error) for s in sent] == [
        ("email", "mailto://…", "verify_failed", True, None),
        ("hook", "json://…", "verify_failed", True, None)]
    message = mail.messages[0]
    assert message["Subject"] == "Tiêu đề" and message["X-Application"] == "hopnhat"
    parts = {p.get_content_type(): p.get_content() for p in message.walk()
             if not p.is_multipart()}
    assert "dòng <b>một</b>" in parts["text/html"] and "dòng một" in parts["text/plain"]
    payload = hook.received[0].json()
    assert hook.received[0].path == "/in"
    # the webhook gets the text, not the HTML meant for mail
    assert payload["title"] == "Tiêu đề" and payload["message"] == "dòng một\ndòng hai"


def test_a_failing_channel_is_reported_not_raised_and_the_others_still_get_it(
        caplog: pytest.LogCaptureFixture) -> None:
    closed = free_port()
    secret = "s3cr3t-token-771"
    with WebhookReceiver() as good, WebhookReceiver(status=500) as broken:
        urls = {"refused": f"json://user:{secret}@127.0.0.1:{closed}/{secret}?cto=2&rto=2",
                "broken": f"json://{broken.url[7:]}/{secret}",
                "good": f"json://{good.url[7:]}/hook",
                "nonsense": f"nosuchscheme://{secret}",
                "bare": secret}
        with caplog.at_level(logging.DEBUG):
            sent = send(urls, "backup_stale", "title", "body", timeout=10)
    by_name = {s.channel: s for s in sent}
    assert [s.channel for s in sent] == list(urls)
    assert by_name["good"].ok and len(good.received) == 1
    for name in ("refused", "broken", "nonsense", "bare"):
        assert not by_name[name].ok and by_name[name].error, name
    assert "500" in (by_name["broken"].error or "")
    assert "not a URL Apprise can use" in (by_name["nonsense"].error or "")
    assert by_name["bare"].target == "?://…"
    # what reaches the handlers of the program (the root logger's: pytest also listens on
    # Apprise's own logger, which the program's handlers never hear: it does not propagate)
    heard = [r.getMessage() for r in caplog.records if r.name.split(".")[0] != "apprise"]
    everything = json.dumps([s.as_dict() for s in sent]) + "\n".join(heard)
    assert secret not in everything
    assert not logging.getLogger("apprise").propagate
    assert any("refused" in line and "failed" in line for line in heard)


def test_a_receiver_that_does_not_answer_in_time_is_a_timeout() -> None:
    import socket

    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        sent = send({"slow": f"json://127.0.0.1:{port}/x?rto=30"}, "drill_failed", "t", "b",
                    timeout=1)
    assert not sent[0].ok and "timed out after 1 s" in (sent[0].error or "")


def test_every_part_of_a_url_is_redacted() -> None:
    url = "tgram://123456789:AAH-bot_token/-1001234567?format=html&to=ops%40x.org"
    text = ("sending to 123456789:AAH-bot_token failed for chat -1001234567 "
            "and ops@x.org via " + url)
    cleaned = redact(text, [url])
    for part in ("123456789:AAH-bot_token", "-1001234567", "ops@x.org", "tgram://1"):
        assert part not in cleaned
    assert cleaned.count(HIDDEN) >= 4
    assert "sending to" in cleaned  # the words around stay
    assert "AAH-bot_token" in secret_parts(url) or any(
        "AAH-bot_token" in p for p in secret_parts(url))
    assert shown(url) == "tgram://…" and shown("not a url") == "?://…"


def test_no_channels_send_nothing() -> None:
    assert send({}, "summary", "t", "b") == ()
