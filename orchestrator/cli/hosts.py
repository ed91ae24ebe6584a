"""``hopnhat hosts trust | forget``: SSH trust of hosts hopnhat did not build."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from orchestrator.cli.common import JsonOption, console, context, err_console, print_json, want_json
from orchestrator.cli.locking import LockTimeoutOption, take_estate_lock
from orchestrator.cli.selectors import require_known
from orchestrator.errors import EXIT_BAD_INPUT, EXIT_PARTIAL

if TYPE_CHECKING:
    from orchestrator.actions.hosts import HostCheck, TrustResult
    from orchestrator.adapters.ssh import Login
    from orchestrator.estate.model import VM

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="SSH trust of the estate's hosts: record a host key only after it "
                       "was compared, and put hopnhat's key on hosts it did not build.")

HostOption = Annotated[str, typer.Option(
    "--host", help="The host: its name in the estate (e.g. qlvbqn-db-01).", show_default=False)]


@app.command("trust")
def trust(
    ctx: typer.Context,
    host: HostOption,
    fingerprint: Annotated[str | None, typer.Option(
        "--fingerprint", help="The host key's SHA-256 fingerprint, as `ssh-keygen -lf` "
        "prints it on the host's console (SHA256:…): for automation, instead of the "
        "question.")] = None,
    login_key: Annotated[Path | None, typer.Option(
        "--login-key", help="Your own private key that the host already accepts: used once "
        "to put hopnhat's key on it.")] = None,
    ask_password: Annotated[bool, typer.Option(
        "--ask-password", help="Ask your password on the host at the terminal (used once "
        "to put hopnhat's key on it; never stored or logged).")] = False,
    login_user: Annotated[str | None, typer.Option(
        "--login-user", help="The account to log in as with --login-key/--ask-password "
        "(default: the estate's ssh.user).")] = None,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="Do not ask; trust only what --fingerprint or vCenter's record "
        "vouches for.")] = False,
    no_vcenter: Annotated[bool, typer.Option(
        "--no-vcenter", help="Do not ask vCenter for the fingerprint it records.")] = False,
    json: JsonOption = False,
    lock_timeout: LockTimeoutOption = 0.0,
) -> None:
    """Trust one host's SSH key after comparing it, then put hopnhat's key on the host.

    Shows the key the host offers (its SHA-256 fingerprint) beside the fingerprint vCenter
    records for that VM, where the province's team set one (extraConfig
    guestinfo.hopnhat.ssh-host-key-sha256). The key is recorded in hopnhat's known_hosts
    only when it matches --fingerprint, or you confirm it at the terminal, or (with --yes)
    vCenter's record matches; a mismatch, or a host whose key changed, is refused (exit 2)
    and nothing is recorded.

    Then, when hopnhat's key does not already log in, it is added to the account's
    ~/.ssh/authorized_keys over SFTP through your existing access (--login-key or
    --ask-password), and hopnhat proves it can log in with its own key. Every later step
    (configure, backups, drills) uses hopnhat's key alone.

    Exit codes: 0 trusted and hopnhat's key works, 2 refused or bad input (nothing
    recorded), 3 the key is trusted but hopnhat's key is not on the host yet (give
    --login-key or --ask-password), 1 the host refused the login.
    """
    from orchestrator.actions.hosts import TrustError, trust_host

    c = context(ctx)
    require_known(ctx, hosts=[host])
    as_json = want_json(ctx, json)
    if login_key is not None and ask_password:
        raise TrustError("give --login-key or --ask-password, not both")
    if login_key is not None and not login_key.is_file():
        raise TrustError(f"--login-key {login_key}: no such file")
    user = login_user or c.estate.settings.ssh.user
    take_estate_lock(ctx, "hosts trust", lock_timeout)
    done = trust_host(c.paths, host, fingerprint=fingerprint, read_vcenter=not no_vcenter,
                      confirm=None if yes else _ask, login=_login(user, login_key, ask_password),
                      on_check=None if as_json else _show)
    if done.result is None:
        err_console.print("not trusted: nothing was recorded")
        raise typer.Exit(EXIT_BAD_INPUT)
    if as_json:
        print_json({"check": done.check.as_dict(), "result": done.result.as_dict()})
    else:
        _render_trusted(done.check, done.result)
    if not done.result.hopnhat_key_works:
        raise typer.Exit(EXIT_PARTIAL)


def _login(user: str, key: Path | None, ask_password: bool) -> Callable[[VM], Login | None]:
    """The operator's own access to a host, asked for (a password at the terminal) only
    once its key is trusted."""
    from orchestrator.actions.hosts import TrustError
    from orchestrator.adapters.ssh import Login

    def login(vm: VM) -> Login | None:
        if key is not None:
            return Login(user, key_file=key)
        if not ask_password:
            return None
        if not sys.stdin.isatty():
            raise TrustError("--ask-password needs a terminal (for automation, use "
                             "--login-key)")
        return Login(user, password=getpass.getpass(f"password of {user} on {vm.name}: "))

    return login


def _render_trusted(check: HostCheck, result: TrustResult) -> None:
    said = "recorded in known_hosts" if result.recorded else "already in known_hosts"
    console.print(f"[green]trusted[/] {escape(check.host)} ({check.address}): "
                  f"{result.fingerprint} {said} (vouched for by {result.confirmed_by})")
    if result.hopnhat_key_works:
        how = "added to the host and works" if result.key_installed else "already works"
        console.print(f"hopnhat's key: {how}")
    else:
        console.print("[yellow]hopnhat's key is not on the host yet:[/] run again with "
                      "--login-key FILE or --ask-password")


def _show(check: HostCheck) -> None:
    console.print(f"host {escape(check.host)} at {check.address}:{check.port} offers "
                  f"{check.offered.kind} {check.offered.fingerprint}")
    if check.vcenter_fingerprint is not None:
        same = "[green]matches[/]" if check.vcenter_fingerprint == \
            check.offered.fingerprint else "[bold red]DIFFERS[/]"
        console.print(f"vCenter records {check.vcenter_fingerprint} ({same}; "
                      f"{escape(check.vcenter_note)})")
    else:
        console.print(f"vCenter: {escape(check.vcenter_note)}")
    console.print(f"known_hosts: {check.state}")


def _ask(check: HostCheck) -> bool:
    """The operator's word on an unknown key, at the terminal (without one: refused)."""
    from orchestrator.actions.hosts import TrustError

    if not sys.stdin.isatty():
        raise TrustError(f"host {check.host}: not trusted without a word for its key: give "
                         "--fingerprint SHA256:…, or --yes to rely on the fingerprint "
                         "vCenter records, or run at a terminal; nothing was recorded")
    answer = typer.prompt(f"Is {check.offered.fingerprint} the key of {check.host}? Compare "
                          "it with the host's console (ssh-keygen -lf "
                          "/etc/ssh/ssh_host_ed25519_key.pub); type yes to trust it",
                          default="", show_default=False, err=True)
    return str(answer).strip().lower() == "yes"


@app.command("forget")
def forget(ctx: typer.Context, host: HostOption, json: JsonOption = False,
           lock_timeout: LockTimeoutOption = 0.0) -> None:
    """Remove a host's key from hopnhat's known_hosts (a host rebuilt with a new key):
    hopnhat then refuses it until `hopnhat hosts trust` vouches for the new one."""
    from orchestrator.actions import hosts as hosts_action
    from orchestrator.adapters import ssh
    from orchestrator.ledger import Ledger

    c = context(ctx)
    require_known(ctx, hosts=[host])
    take_estate_lock(ctx, "hosts forget", lock_timeout)
    vm = hosts_action.find_host(c.paths, host)
    removed = ssh.forget_host_key(c.paths.known_hosts, str(vm.ip), hosts_action.SSH_PORT)
    with Ledger(c.paths.ledger) as ledger:
        run_id = ledger.start("hosts.forget", c.estate.id, {"host": vm.name,
                                                            "removed": removed})
        ledger.finish(run_id, "ok", {"removed": removed})
    if want_json(ctx, json):
        print_json({"host": vm.name, "address": str(vm.ip), "removed": removed})
    else:
        console.print(f"{escape(vm.name)} ({vm.ip}): {removed} known_hosts line(s) removed")
