"""``hopnhat estate``: validate, show, and derive the Ansible inventory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from orchestrator.cli.common import (
    JsonOption,
    console,
    context,
    err_console,
    print_json,
    want_json,
)
from orchestrator.errors import EstateError

if TYPE_CHECKING:
    from orchestrator.estate.model import Estate

app = typer.Typer(no_args_is_help=True, help="The estate: sites, systems, VMs (inventory/).")


@app.command()
def validate(ctx: typer.Context, json: JsonOption = False) -> None:
    """Check every file of the estate (and the lab's lab.yml beside it) and list EVERY
    problem at once, each with its file and key path. Exit 0 if valid, 2 if not. Reads
    only; changes nothing."""
    c = context(ctx)
    try:
        try:
            estate = c.estate
        except EstateError as exc:
            raise EstateError(exc.problems + _lab_problems(c.estate_dir)) from None
        lab = _lab_problems(c.estate_dir)
        if lab:
            raise EstateError(lab)
    except EstateError as exc:
        if want_json(ctx, json):
            print_json({"valid": False, "problems": [
                {"file": f, "key": k, "message": m} for f, k, m in exc.problems]})
            raise typer.Exit(exc.exit_code) from None
        # escaped: messages quote the YAML, and "[/x]" there is not rich markup
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    summary = {"valid": True, "estate": estate.id, "sites": len(estate.sites),
               "systems": len(estate.systems), "vms": len(estate.vms)}
    if want_json(ctx, json):
        print_json(summary)
    else:
        console.print(f"estate {estate.id} ({escape(str(c.estate_dir))}) is valid: "
                      f"{len(estate.sites)} sites, {len(estate.systems)} systems, "
                      f"{len(estate.vms)} VMs", soft_wrap=True)


def _lab_problems(estate_dir: Path) -> list[tuple[str, str, str]]:
    """The problems of ``lab.yml`` (the lab's sizing, beside the estate), if there is one:
    a broken one is found here, not at ``lab up``."""
    from orchestrator.estate.checks import Problems
    from orchestrator.estate.loader import read_yaml, validate_file
    from orchestrator.lab.config import LabConfig

    path = estate_dir / "lab.yml"
    if not path.exists() and not path.is_symlink():
        return []
    problems = Problems()
    validate_file(LabConfig, read_yaml(path, "lab.yml", problems, estate_dir), "lab.yml",
                  problems)
    return problems.items


def estate_document(estate: Estate) -> dict[str, Any]:
    """The estate as data, sites → systems → VMs, with tiers and targets."""
    from orchestrator.human import duration

    sites: dict[str, Any] = {}
    for site in estate.sites.values():
        sites[site.name] = {"role": site.role, "title": site.title,
                            "datacenter": site.datacenter, "vcenter": site.vcenter.url,
                            "systems": {}}
    for code, system in sorted(estate.systems.items(), key=lambda kv: (kv[1].tier, kv[0])):
        tier = estate.tier(system.tier)
        for vm in estate.vms_of(code):
            entry = sites[vm.site]["systems"].setdefault(code, {
                "name": system.name, "tier": system.tier,
                "rpo": duration(tier.rpo, "estate"), "rto": duration(tier.rto, "estate"),
                "drill_interval": duration(tier.drill_interval, "estate"),
                "depends_on": list(system.depends_on),
                "repository_host": system.backup.repository_host if system.backup else None,
                "vms": []})
            entry["vms"].append({**vm.model_dump(mode="json", include={
                "name", "role", "ip", "cpu", "memory_mb", "disks_gb", "cluster", "datastore",
                "port_group", "data"}), "existing": vm.where() if vm.adopted else None})
    return {"estate": estate.id, "name": estate.settings.name, "sites": sites,
            "repository_hosts": [h.model_dump(mode="json")
                                 for h in estate.settings.repository_hosts]}


@app.command()
def show(ctx: typer.Context, json: JsonOption = False) -> None:
    """Show the estate: sites → systems → VMs, with each system's tier and targets."""
    estate = context(ctx).estate
    doc = estate_document(estate)
    if want_json(ctx, json):
        print_json(doc)
        return
    # names and titles come from the YAML: escaped, so brackets in them are not rich markup
    tree = Tree(f"[bold]{escape(estate.settings.name)}[/] ({estate.id})")
    for site_name, site in doc["sites"].items():
        branch = tree.add(f"[bold cyan]{site_name}[/] {site['role']} — {escape(site['title'])} "
                          f"[dim]{site['datacenter']} @ {escape(site['vcenter'])}[/]")
        table = Table(show_edge=False, pad_edge=False, box=None)
        for col in ("system", "tier", "RPO", "RTO", "VM", "IP", "CPU", "MiB", "disks GB",
                    "data"):
            table.add_column(col)
        for code, system in site["systems"].items():
            for i, vm in enumerate(system["vms"]):
                first = i == 0
                table.add_row(code if first else "", str(system["tier"]) if first else "",
                              system["rpo"] if first else "", system["rto"] if first else "",
                              vm["name"] + (f" [dim]= {escape(vm['existing'])}[/]"
                                            if vm["existing"] else ""),
                              vm["ip"], str(vm["cpu"] or "?"), str(vm["memory_mb"] or "?"),
                              "+".join(str(d) for d in vm["disks_gb"] or ()) or "?",
                              "yes" if vm["data"] else "")
        if site["systems"]:
            branch.add(table)
    for host in doc["repository_hosts"]:
        tree.add(f"repository host [bold]{host['name']}[/] {host['address']}:{host['port']} "
                 f"({host['site']}, {escape(host['storage_path'])}, {host['capacity_gb']} GB)")
    console.print(tree)


@app.command()
def inventory(
    ctx: typer.Context,
    list_: Annotated[bool, typer.Option("--list", help="All groups and hosts (Ansible "
                                        "dynamic-inventory protocol).")] = False,
    host: Annotated[str | None, typer.Option("--host", help="One host's variables.")] = None,
) -> None:
    """Print the Ansible inventory derived from the estate, as an Ansible dynamic
    inventory (playbooks/inventory.py wraps this for plain ansible-playbook and AWX)."""
    from orchestrator.estate.inventory import build_inventory, host_vars
    from orchestrator.quoting import ansible_value

    # every variable marked unsafe: Ansible takes an inventory script's output as trusted
    # templates, and a "{{ lookup('pipe', …) }}" written in the estate would run here
    paths = context(ctx).paths
    if host is not None:
        print_json(ansible_value(host_vars(paths, host)))
    else:
        del list_  # --list is the default answer
        found = build_inventory(paths)
        for name, group in found.items():
            if name == "_meta":
                group["hostvars"] = {h: ansible_value(v) for h, v in group["hostvars"].items()}
            elif isinstance(group, dict) and "vars" in group:
                group["vars"] = ansible_value(group["vars"])
        print_json(found)
