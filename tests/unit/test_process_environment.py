"""A child's environment is built from an allow-list, never copied: what an operator's
shell holds (a restic password, cloud keys, an SSH agent) reaches no child unless the
caller hands it over."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import process

PLANTED = "PLANTED-5e7c2a9d"


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RESTIC_PASSWORD", "AWS_SECRET_ACCESS_KEY", "HOPNHAT_SOMETHING",
                 "ANSIBLE_VAULT_PASSWORD", "SSH_AUTH_SOCK", "HTTPS_PROXY"):
        monkeypatch.setenv(name, PLANTED)
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("LC_TIME", "C")


def environment_of(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_a_planted_variable_reaches_no_child_of_run(planted: None) -> None:
    done = process.run(["env"], check=True)
    assert PLANTED not in done.stdout
    seen = environment_of(done.stdout)
    assert seen["LANG"] == "C.UTF-8" and seen["LC_TIME"] == "C" and "PATH" in seen


def test_what_the_caller_hands_over_passes(planted: None) -> None:
    done = process.run(["env"], env={"RESTIC_PASSWORD_FILE": "/run/x"}, check=True)
    assert environment_of(done.stdout)["RESTIC_PASSWORD_FILE"] == "/run/x"
    assert PLANTED not in done.stdout


def test_a_planted_variable_reaches_no_child_of_stream_reading_or_spawn(
        planted: None, tmp_path: Path) -> None:
    assert PLANTED not in process.stream(["env"]).stdout
    with process.reading(["env"]) as out:
        assert PLANTED.encode() not in out.stdout.read()
    log = tmp_path / "env.log"
    child = process.spawn(["env"], log=log)
    child.wait(timeout=30)  # the child wrote the log itself: complete once it has ended
    assert "PATH=" in log.read_text() and PLANTED not in log.read_text()


def test_without_inheriting_only_path_is_given(planted: None) -> None:
    seen = environment_of(process.run(["env"], inherit_env=False, check=True).stdout)
    assert set(seen) == {"PATH"}


def test_the_allow_list_holds_no_secret_looking_name() -> None:
    for name in process.INHERITED:
        assert not any(word in name for word in ("PASS", "SECRET", "TOKEN", "KEY", "AUTH",
                                                 "PROXY", "HOPNHAT", "RESTIC", "ANSIBLE"))
