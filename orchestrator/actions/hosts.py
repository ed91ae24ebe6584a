"""``hosts trust``: take over the SSH access of a host hopnhat did not build.

A VM hopnhat clones carries hopnhat's key and its host key is recorded as the lab or the
template's first boot reports it. A VM hopnhat adopts has neither: its host key is never
trusted on first use, and hopnhat's key is not on it. :func:`inspect` reads what the host
offers (its key's SHA-256 fingerprint), what hopnhat's known_hosts says of it, and the
fingerprint vCenter records for that VM where the province's team set one (extraConfig
``guestinfo.hopnhat.ssh-host-key-sha256``); :func:`decide` says whether the key may be
trusted (the operator's fingerprint or confirmation, or vCenter's record, must match);
:func:`trust` records the key, installs hopnhat's public key through the operator's own
access (their key or a password, never stored), proves hopnhat's key works, and writes
the ledger; :func:`trust_host` runs the whole of ``hosts trust``, asking the operator
through a callback.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.adapters import ssh
from orchestrator.adapters.ssh import HostKey, Login
from orchestrator.adapters.vsphere_facts import HOST_KEY_FINGERPRINT, OWNER, read_inventory
from orchestrator.errors import EXIT_BAD_INPUT, HopnhatError, SSHError
from orchestrator.estate.model import VM
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths

SSH_PORT = 22
FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")
TRUSTED, CHANGED, UNKNOWN = "trusted", "changed", "unknown"


class TrustError(HopnhatError):
    """A host key hopnhat will not trust (exit 2): nothing was recorded."""

    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True)
class HostCheck:
    """What is known of one host's key before anything is trusted."""

    host: str
    address: str
    port: int
    offered: HostKey
    known: tuple[HostKey, ...]
    vcenter_fingerprint: str | None  # what vCenter records for this VM, when it does
    vcenter_note: str  # where vCenter's record came from, or why there is none

    @property
    def state(self) -> str:
        if not self.known:
            return UNKNOWN
        if any(k.blob == self.offered.blob for k in self.known):
            return TRUSTED
        return CHANGED

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "address": self.address, "port": self.port,
                "state": self.state, "key_type": self.offered.kind,
                "fingerprint": self.offered.fingerprint,
                "known_fingerprints": [k.fingerprint for k in self.known],
                "vcenter_fingerprint": self.vcenter_fingerprint,
                "vcenter_note": self.vcenter_note}


@dataclass(frozen=True)
class TrustResult:
    host: str
    fingerprint: str
    recorded: bool  # written into known_hosts by this run (False: it was there)
    confirmed_by: str  # operator, --fingerprint, vcenter, known_hosts
    key_installed: bool  # hopnhat's key added by this run
    hopnhat_key_works: bool

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "fingerprint": self.fingerprint, "recorded": self.recorded,
                "confirmed_by": self.confirmed_by, "key_installed": self.key_installed,
                "hopnhat_key_works": self.hopnhat_key_works}


def find_host(paths: Paths, name: str) -> VM:
    """The estate's VM ``name``. Raises TrustError listing the names when there is none."""
    estate = paths.estate
    found = next((vm for vm in estate.vms if vm.name == name), None)
    if found is None:
        adopted = sorted(vm.name for vm in estate.vms if vm.adopted)
        listed = ", ".join(adopted[:20]) or "none"
        raise TrustError(f"no host {name!r} in the estate (adopted hosts: {listed}; any VM "
                         "of the estate can be named)")
    return found


def vcenter_fingerprint(paths: Paths, vm: VM) -> tuple[str | None, str]:
    """The host key fingerprint vCenter records for ``vm`` (its extraConfig
    :data:`HOST_KEY_FINGERPRINT`), and where it came from or why there is none. A vCenter
    that cannot be read is a note, not an error: the operator can still compare by hand."""
    from orchestrator.actions.provision.plan import locate
    from orchestrator.actions.provision.vcenters import endpoints
    from orchestrator.adapters.vsphere import open_vcenters

    try:
        with open_vcenters(endpoints(paths, [vm.site]), 2) as vcenters:
            vc = next(iter(vcenters.values()))
            inv = read_inventory(vc, lambda _: False)
            if vm.existing is not None:
                matches, _ = locate(vm, inv)
            else:
                matches = [m for m in inv.vms_named(vm.name)
                           if m.attributes.get(OWNER) == paths.estate.id]
            if len(matches) != 1:
                return None, f"vCenter {vc.url}: {len(matches)} VM(s) match {vm.where()}"
            rows = vc.object_properties("reading the host key fingerprint",
                                        [matches[0].ref], type(matches[0].ref),
                                        ["config.extraConfig"], lean=True)
    except HopnhatError as exc:
        return None, f"vCenter not read: {exc}"
    options = rows[0].get("config.extraConfig") or [] if rows else []
    for option in options:
        if option.key == HOST_KEY_FINGERPRINT and option.value:
            value = str(option.value).strip()
            if FINGERPRINT.match(value):
                return value, f"extraConfig {HOST_KEY_FINGERPRINT} of {vm.where()}"
            return None, f"extraConfig {HOST_KEY_FINGERPRINT} of {vm.where()} is not a " \
                "SHA256 fingerprint"
    return None, f"vCenter records no fingerprint for {vm.where()} (extraConfig " \
        f"{HOST_KEY_FINGERPRINT})"


def inspect(paths: Paths, vm: VM, *, read_vcenter: bool = True,
            timeout: float = 15.0) -> HostCheck:
    """What ``vm``'s host offers, what known_hosts holds, what vCenter records. Raises
    TrustError (exit 2) naming the host when its address does not answer SSH."""
    address = str(vm.ip)
    try:
        offered = ssh.scan_host_key(address, SSH_PORT, timeout)
    except SSHError as exc:
        raise TrustError(f"host {vm.name}: {exc}; nothing was recorded") from None
    known = tuple(ssh.known_keys(paths.known_hosts, address, SSH_PORT))
    fingerprint, note = vcenter_fingerprint(paths, vm) if read_vcenter else \
        (None, "vCenter not asked (--no-vcenter)")
    return HostCheck(vm.name, address, SSH_PORT, offered, known, fingerprint, note)


def decide(check: HostCheck, fingerprint: str | None, confirmed: bool) -> str:
    """Whether the offered key may be trusted, and on whose word: ``known_hosts`` (already
    trusted), ``--fingerprint``, ``vcenter`` or ``operator`` (``confirmed``: they compared
    and said yes). Raises TrustError (exit 2) for a changed key, a fingerprint that does
    not match (the operator's or vCenter's), or no word at all."""
    offered = check.offered.fingerprint
    where = f"host {check.host} ({check.address})"
    if check.state == CHANGED:
        raise TrustError(
            f"{where} offers a different key than the one hopnhat trusts: known "
            f"{', '.join(k.fingerprint for k in check.known)}, offered {offered}. If the "
            f"host was rebuilt, compare the new key and run `hopnhat hosts forget --host "
            f"{check.host}` first; otherwise someone may be in the middle. Nothing was "
            "recorded")
    if fingerprint is not None:
        if not FINGERPRINT.match(fingerprint):
            raise TrustError(f"--fingerprint {fingerprint!r} is not a SHA256 fingerprint "
                             "(SHA256: and 43 base64 characters, as ssh-keygen -lf prints)")
        if fingerprint != offered:
            raise TrustError(f"{where} offers {offered}, not the fingerprint given "
                             f"({fingerprint}): not trusted, nothing was recorded")
    if check.vcenter_fingerprint is not None and check.vcenter_fingerprint != offered:
        raise TrustError(f"{where} offers {offered}, but vCenter records "
                         f"{check.vcenter_fingerprint} ({check.vcenter_note}): not trusted, "
                         "nothing was recorded")
    if check.state == TRUSTED:
        return "known_hosts"
    if fingerprint is not None:
        return "--fingerprint"
    if confirmed:
        return "operator"
    if check.vcenter_fingerprint is not None:
        return "vcenter"
    raise TrustError(f"{where} offers {offered}, and nothing vouches for it "
                     f"({check.vcenter_note}): compare it with what the host's console "
                     "shows (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and give it "
                     "with --fingerprint, or "
                     "answer the question at a terminal; nothing was recorded")


def trust(paths: Paths, check: HostCheck, confirmed_by: str, login: Login | None,
          ledger: Ledger) -> TrustResult:
    """Record the host's key (unless known), put hopnhat's key on it through ``login``
    when hopnhat's key does not already work, prove hopnhat's key works, and write the
    ledger. Raises SSHError naming the host when the login is refused or the key cannot be
    added (the recorded host key stays: it was vouched for)."""
    recorded = check.state != TRUSTED
    if recorded:
        ssh.record_host_key(paths.known_hosts, check.address, check.port, check.offered)
    user = paths.estate.settings.ssh.user
    run_id = ledger.start("hosts.trust", paths.estate.id, {
        "host": check.host, "address": check.address, "fingerprint": check.offered.fingerprint,
        "confirmed_by": confirmed_by})
    installed = False
    works = False
    try:
        works = ssh.accepts_key(check.address, check.port, check.offered, user,
                                paths.private_key)
        if not works and login is not None:
            public = ssh.ensure_keypair(paths.private_key, f"hopnhat@{paths.estate.id}")
            installed = ssh.install_authorized_key(check.address, check.port, check.offered,
                                                   login, public.read_text())
            works = ssh.accepts_key(check.address, check.port, check.offered, user,
                                    paths.private_key)
            if not works:
                raise SSHError(f"host {check.host}: hopnhat's key was added to "
                               f"{login.user}'s authorized_keys but {user} still cannot log "
                               "in with it (is ssh.user the account the key was added to?)")
    finally:
        result = TrustResult(check.host, check.offered.fingerprint, recorded, confirmed_by,
                             installed, works)
        ledger.event(run_id, check.host, "trusted", **result.as_dict())
        ledger.finish(run_id, "ok" if works else "partial", result.as_dict())
    return result


@dataclass(frozen=True)
class Trusted:
    """How ``hosts trust`` ended: the host's check, and on whose word its key was trusted
    with the result; both None when the operator said no (nothing was recorded)."""

    check: HostCheck
    confirmed_by: str | None
    result: TrustResult | None


def trust_host(paths: Paths, name: str, *, fingerprint: str | None = None,
               read_vcenter: bool = True,
               confirm: Callable[[HostCheck], bool] | None = None,
               login: Callable[[VM], Login | None] = lambda vm: None,
               on_check: Callable[[HostCheck], None] | None = None) -> Trusted:
    """``hosts trust`` from end to end: :func:`inspect` the host (``on_check`` hears what
    it found), ask ``confirm`` when its key is unknown and no ``fingerprint`` vouches for it
    (None: no one is asked; vCenter's record must vouch), :func:`decide`, then
    :func:`trust` with ``login`` (the operator's own access, asked only once the key is
    trusted) and the ledger. Raises TrustError (exit 2, nothing recorded) as
    :func:`decide` does."""
    vm = find_host(paths, name)
    check = inspect(paths, vm, read_vcenter=read_vcenter)
    if on_check is not None:
        on_check(check)
    confirmed = False
    if check.state == UNKNOWN and fingerprint is None and confirm is not None:
        confirmed = confirm(check)
        if not confirmed:
            return Trusted(check, None, None)
    confirmed_by = decide(check, fingerprint, confirmed)
    access = login(vm)
    with Ledger(paths.ledger) as ledger:
        return Trusted(check, confirmed_by, trust(paths, check, confirmed_by, access, ledger))
