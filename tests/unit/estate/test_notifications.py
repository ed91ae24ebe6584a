"""``notifications:`` in estate.yml: channels by vault reference, routes naming them, and
what an older estate's ``verification.notify_command`` is told — each problem named by file
and key."""

from __future__ import annotations

from typing import Any

from tests.helpers import EstateCopy

CHANNELS = {"email": {"url": {"vault": "notify_email"}},
            "zalo": {"url": {"vault": "notify_zalo"}}}


def _notifications(value: dict[str, Any]) -> Any:
    return lambda data: data.__setitem__("notifications", value)


def test_channels_and_routes_load(estate_copy: EstateCopy) -> None:
    estate_copy.edit("estate.yml", _notifications({
        "timeout": "20s", "lang": "en", "channels": CHANNELS,
        "routes": {"verify_failed": ["email", "zalo"], "summary": ["email"]}}))
    settings = estate_copy.load().settings.notifications
    assert settings.routed("verify_failed") == ["email", "zalo"]
    assert settings.routed("drill_overdue") == []
    assert settings.channels["zalo"].url.vault == "notify_zalo"
    assert settings.timeout.total_seconds() == 20 and settings.lang == "en"


def test_an_estate_without_notifications_tells_no_one(estate_copy: EstateCopy) -> None:
    settings = estate_copy.load().settings.notifications
    assert settings.channels == {} and settings.routes == {}


def test_a_url_in_plain_text_an_unknown_event_and_an_unknown_channel_are_named(
        estate_copy: EstateCopy) -> None:
    estate_copy.edit("estate.yml", _notifications({
        "channels": {"email": {"url": "mailtos://user:pw@smtp.example.org"}},
        "routes": {"verify_faild": ["email"]}}))
    estate_copy.assert_only_problems(
        ("estate.yml", "notifications.channels.email.url", "plain text"),
        ("estate.yml", "notifications.routes.verify_faild", "verify_failed"))
    estate_copy.edit("estate.yml", _notifications({
        "channels": CHANNELS, "routes": {"drill_failed": ["email", "teams"]}}))
    estate_copy.assert_only_problems(
        ("estate.yml", "notifications",
         "routes.drill_failed names no channel of channels: teams (channels: email, zalo)"))


def test_the_old_notify_command_is_an_error_naming_notifications(
        estate_copy: EstateCopy) -> None:
    estate_copy.edit("estate.yml", lambda data: data.setdefault("verification", {})
                     .__setitem__("notify_command", "mail -s hopnhat ops@example.org"))
    found = estate_copy.assert_only_problems(
        ("estate.yml", "verification.notify_command", "notifications.channels"))
    assert "notifications.routes" in found[0][2]
