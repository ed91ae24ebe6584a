"""Whether a host key may be trusted (hosts trust), and hopnhat's known_hosts edits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.actions import hosts
from orchestrator.actions.hosts import (
    CHANGED,
    TRUSTED,
    UNKNOWN,
    HostCheck,
    Trusted,
    TrustError,
    decide,
    trust_host,
)
from orchestrator.adapters import ssh
from orchestrator.adapters.ssh import HostKey
from orchestrator.estate import load_estate
from orchestrator.estate.model import VM
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from tests.helpers import EXAMPLE_ESTATE

ESTATE = load_estate(EXAMPLE_ESTATE)

PREFIX = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20"  # the type, then a 32-byte key
KEY = HostKey("ssh-ed25519", PREFIX + bytes(range(32)))
OTHER = HostKey("ssh-ed25519", PREFIX + bytes(range(1, 33)))
THIRD = HostKey("ssh-ed25519", PREFIX + bytes(range(2, 34)))


def check(known: tuple[HostKey, ...] = (), vcenter: str | None = None) -> HostCheck:
    return HostCheck("qlvbqn-db-01", "127.20.1.5", 22, KEY, known, vcenter,
                     "extraConfig" if vcenter else "vCenter records no fingerprint")


def test_the_fingerprint_is_what_ssh_keygen_prints() -> None:
    assert KEY.fingerprint.startswith("SHA256:") and len(KEY.fingerprint) == 50
    assert "=" not in KEY.fingerprint


def test_states() -> None:
    assert check().state == UNKNOWN
    assert check((KEY,)).state == TRUSTED
    assert check((OTHER,)).state == CHANGED


def test_nothing_vouches_nothing_is_trusted() -> None:
    with pytest.raises(TrustError, match="nothing vouches for it") as refused:
        decide(check(), None, confirmed=False)
    assert refused.value.exit_code == 2


@pytest.mark.parametrize(("vcenter", "given", "confirmed", "by"), [
    (None, KEY.fingerprint, False, "--fingerprint"),
    (None, None, True, "operator"),
    (KEY.fingerprint, None, False, "vcenter"),
    (KEY.fingerprint, KEY.fingerprint, False, "--fingerprint"),
])
def test_a_word_that_matches_vouches(vcenter: str | None, given: str | None,
                                     confirmed: bool, by: str) -> None:
    assert decide(check(vcenter=vcenter), given, confirmed) == by


def test_a_wrong_word_is_refused_whoever_else_agrees() -> None:
    with pytest.raises(TrustError, match="not the fingerprint given"):
        decide(check(vcenter=KEY.fingerprint), OTHER.fingerprint, confirmed=True)
    with pytest.raises(TrustError, match="but vCenter records"):
        decide(check(vcenter=OTHER.fingerprint), KEY.fingerprint, confirmed=True)
    with pytest.raises(TrustError, match="not a SHA256 fingerprint"):
        decide(check(), "MD5:aa:bb", confirmed=False)


def test_a_changed_key_is_refused_even_with_its_fingerprint() -> None:
    with pytest.raises(TrustError, match="different key") as refused:
        decide(check((OTHER,)), KEY.fingerprint, confirmed=True)
    assert "hosts forget" in str(refused.value)


def test_known_hosts_records_one_key_per_host_and_forgets_it(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    other_host = f"127.20.1.9 {THIRD.line()}\n"
    known.write_text(other_host)
    ssh.record_host_key(known, "127.20.1.5", 22, OTHER)
    ssh.record_host_key(known, "127.20.1.5", 22, KEY)
    assert [k.blob for k in ssh.known_keys(known, "127.20.1.5", 22)] == [KEY.blob]
    assert ssh.known_keys(known, "127.20.1.5", 2222) == []
    assert known.read_text().startswith("127.20.1.9 ")
    assert oct(known.stat().st_mode & 0o777) == "0o600"
    assert ssh.forget_host_key(known, "127.20.1.5", 22) == 1
    assert ssh.known_keys(known, "127.20.1.5", 22) == []
    assert known.read_text() == other_host


# --- hosts trust from end to end, the host and its SSH answers faked -------------------------


def _trust_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, known: tuple[HostKey, ...],
                confirm: Callable[[HostCheck], bool] | None,
                fingerprint: str | None = None) -> tuple[Trusted, list[str], Paths]:
    """:func:`trust_host` of qlvbqn-db-01 offering KEY (``known``: what known_hosts holds);
    out: how it ended, the logins asked for, the paths."""
    paths = Paths(tmp_path / "state", ESTATE)
    monkeypatch.setattr(hosts, "inspect", lambda paths_, vm, read_vcenter: check(known))
    monkeypatch.setattr(ssh, "accepts_key", lambda *args: True)  # hopnhat's key works
    asked: list[str] = []

    def login(vm: VM) -> None:
        asked.append(vm.name)

    done = trust_host(paths, "qlvbqn-db-01", fingerprint=fingerprint, confirm=confirm,
                      login=login)
    return done, asked, paths


def _runs(paths: Paths) -> list[tuple[str, str]]:
    with Ledger(paths.ledger) as ledger:
        return [(run.kind, run.status) for run in ledger.runs()]


def test_an_operator_who_says_no_leaves_nothing_recorded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[HostCheck] = []

    def no(check: HostCheck) -> bool:
        shown.append(check)
        return False

    done, asked, paths = _trust_host(tmp_path, monkeypatch, (), no)
    assert (done.confirmed_by, done.result) == (None, None)
    assert [c.offered for c in shown] == [KEY]
    assert asked == []  # no password asked for a key not trusted
    assert not paths.known_hosts.exists()
    assert _runs(paths) == []


def test_an_operator_who_says_yes_has_the_key_recorded_and_the_run_in_the_ledger(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    done, asked, paths = _trust_host(tmp_path, monkeypatch, (), lambda check: True)
    assert done.confirmed_by == "operator" and done.result is not None
    assert done.result.recorded and done.result.hopnhat_key_works
    assert asked == ["qlvbqn-db-01"]
    assert [k.fingerprint for k in ssh.known_keys(paths.known_hosts, "127.20.1.5", 22)] == [
        KEY.fingerprint]
    assert _runs(paths) == [("hosts.trust", "ok")]


def test_a_fingerprint_given_vouches_without_asking_anyone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def never(check: HostCheck) -> bool:
        raise AssertionError("the operator was asked")

    done, _, paths = _trust_host(tmp_path, monkeypatch, (), never,
                                 fingerprint=KEY.fingerprint)
    assert done.confirmed_by == "--fingerprint"
    assert _runs(paths) == [("hosts.trust", "ok")]


def test_a_changed_key_is_refused_before_anyone_is_asked_or_anything_recorded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TrustError, match="different key"):
        _trust_host(tmp_path, monkeypatch, (OTHER,), lambda check: True)
    assert _runs(Paths(tmp_path / "state", ESTATE)) == []
