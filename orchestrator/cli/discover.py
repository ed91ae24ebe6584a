"""``hopnhat discover``: the VMs the estate's vCenters run and the estate does not
describe, grouped into candidate systems; ``--write DIR`` drafts their system files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from orchestrator.cli.common import JsonOption, console, context, err_console, print_json, want_json
from orchestrator.cli.selectors import require_known
from orchestrator.errors import EXIT_FAILURE


def discover(
    ctx: typer.Context,
    site: Annotated[list[str] | None, typer.Option(
        "--site", help="Only this site's datacenter (repeatable; default: every site's "
        "vCenter, whole).", show_default=False)] = None,
    write: Annotated[Path | None, typer.Option(
        "--write", help="Write a draft systems/<code>.yml per candidate system into this "
        "folder (never overwriting a file).", show_default=False)] = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="Do not verify vCenter's TLS certificate (lab only).")] = False,
    json: JsonOption = False,
) -> None:
    """List the VMs running in the estate's vCenters that the estate does not describe —
    what the former provinces built themselves — with what vCenter knows of each: folder,
    cluster, datastore, CPU, memory, disks, port groups, guest IP and host name, guest OS,
    power and VMware Tools state, custom attributes, instance UUID, and the estate that
    owns it when another one does. They are grouped into candidate systems (name prefix
    and folder; two provinces' `qlvb` get distinct codes).

    With --write DIR, a draft system file per candidate, in the estate's schema: the
    facts filled in, each VM under `existing:` (tied to its instance UUID), and what only
    a person can know (tier, backup paths, probes) left as FILL IN placeholders that
    `hopnhat estate validate` refuses until they are filled. Move a filled draft into the
    estate's systems/ folder; `hopnhat plan` then shows its adoption.

    Reads vCenter only (a constant number of requests per vCenter); never changes it.
    Exit codes: 0 read, 1 a vCenter could not be read (the others are shown), 2 bad input
    (an unknown site, a draft file that already exists: nothing written).
    """
    from orchestrator.actions import discover as discover_action
    from orchestrator.actions.provision import vcenters as provision_vcenters
    from orchestrator.adapters.vsphere import open_each_vcenter

    c = context(ctx)
    estate = c.estate
    as_json = want_json(ctx, json)
    sites = list(site or ())
    require_known(ctx, sites=sites)
    endpoints = provision_vcenters.endpoints(c.paths, sites or list(estate.sites), insecure)
    err_console.print(f"Reading {', '.join(e.label for e in endpoints)} …")
    with open_each_vcenter(endpoints, 2) as (vcenters, refused):
        facts, failed = discover_action.read(estate, vcenters, c.paths.device_cache)
    failed.update({url: str(exc) for url, exc in refused.items()})
    found = discover_action.discover(estate, facts, sites)
    written: list[Path] = []
    if write is not None:
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        written = discover_action.write_drafts(estate, found.candidates, write, when)
    if as_json:
        doc = found.as_dict()
        doc["unreachable"] = [{"vcenter": url, "error": why} for url, why in failed.items()]
        doc["written"] = [str(p) for p in written]
        print_json(doc)
    else:
        _render(found, failed, written)
    if failed:
        raise typer.Exit(EXIT_FAILURE)


def _render(found: object, failed: dict[str, str], written: list[Path]) -> None:
    from orchestrator.actions.discover import Discovery

    assert isinstance(found, Discovery)
    if found.vms:
        table = Table(title=f"VMs the estate {found.estate} does not describe")
        for column in ("site", "VM (folder)", "hardware", "network", "guest", "state",
                       "note"):
            table.add_column(column, overflow="fold")
        for vm in found.vms:
            disks = "+".join(str(d) for d in vm.disks_gb) or "?"
            groups = ", ".join(g or "?" for g in vm.port_groups) or "?"
            guest = ", ".join(p for p in (vm.ip, vm.hostname, vm.guest_os) if p) or "-"
            note = f"owned by estate {vm.owner}: not adoptable" if vm.owner else \
                ", ".join(f"{k}={v}" for k, v in vm.attributes.items())
            table.add_row(escape(vm.site or f"({vm.datacenter}: no site)"),
                          escape(vm.path()), f"{vm.cpu} vCPU, {vm.memory_mb} MB, {disks} GB",
                          escape(groups), escape(guest),
                          escape(f"{vm.power_state}, tools {vm.tools or 'unknown'}"),
                          escape(note))
        console.print(table)
    if found.candidates:
        table = Table(title="candidate systems")
        for column in ("code", "site", "folder", "roles: VMs"):
            table.add_column(column, overflow="fold")
        for candidate in found.candidates:
            roles = "; ".join(f"{role}: {', '.join(vm.name for vm in vms)}"
                              for role, vms in candidate.roles.items())
            table.add_row(candidate.code, candidate.site, escape(candidate.folder or "/"),
                          escape(roles))
        console.print(table)
    console.print(f"[bold]Discovered:[/] {len(found.vms)} VM(s) not described by the estate "
                  f"({found.described} described), {len(found.candidates)} candidate "
                  "system(s).")
    for path in written:
        console.print(f"draft written: {escape(str(path))} (fill in every FILL IN, then "
                      "`hopnhat estate validate`)")
    for url, why in failed.items():
        console.print(f"[bold red]not read:[/] {escape(url)}: {escape(why)}", soft_wrap=True)
