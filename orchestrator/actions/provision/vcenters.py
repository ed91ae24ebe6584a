"""Which VMs a command concerns and how to read their vCenters: selection, endpoints
(passwords from the vault), every vCenter read at once (one slow province does not
hold up the other), device lists from the cache."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from orchestrator.actions.selection import require_known
from orchestrator.adapters.vsphere import Endpoint, VCenter
from orchestrator.adapters.vsphere_cache import DeviceCache
from orchestrator.adapters.vsphere_facts import (
    Inventory,
    read_inventory,
)
from orchestrator.errors import VSphereError
from orchestrator.estate.model import VM, Estate
from orchestrator.estate.secrets import Secrets
from orchestrator.settings import Paths

T = TypeVar("T")


# ---------------------------------------------------------------- selecting VMs


def select(estate: Estate, systems: Sequence[str] = (), sites: Sequence[str] = ()) -> list[VM]:
    """The estate's VMs of ``systems`` at ``sites`` (all when empty), in estate order.
    Raises PlanError (exit 2) naming an unknown system or site."""
    require_known(estate, systems=systems, sites=sites)
    return [vm for vm in estate.vms
            if (not systems or vm.system in systems) and (not sites or vm.site in sites)]


def vcenter_of(estate: Estate, vm: VM) -> str:
    return estate.sites[vm.site].vcenter.url


def sites_of_vcenter(estate: Estate, url: str) -> tuple[str, ...]:
    """The sites whose vCenter is at ``url``, in estate order."""
    return tuple(name for name, site in estate.sites.items() if site.vcenter.url == url)


def endpoints(paths: Paths, sites: Iterable[str], insecure: bool = False) -> list[Endpoint]:
    """How to reach the vCenter of each of ``sites`` (one per URL, each with its own user
    name, password and CA bundle): the password from the vault, the site's CA bundle, TLS
    verification on unless the site or ``insecure`` says otherwise; each names the sites it
    serves (for errors). Raises SecretError when the vault cannot give a password."""
    estate, secrets = paths.estate, Secrets(paths)
    out: dict[str, Endpoint] = {}
    for name in sorted(set(sites)):
        vcenter = estate.sites[name].vcenter
        if vcenter.url not in out:
            out[vcenter.url] = Endpoint(
                url=vcenter.url, username=vcenter.username,
                password=secrets.get(vcenter.password),
                ca_bundle=paths.ca_bundle(vcenter.ca_bundle),
                insecure=insecure or vcenter.insecure, timeout=vcenter.timeout.total_seconds(),
                sites=sites_of_vcenter(estate, vcenter.url),
                insecure_by="--insecure" if insecure else
                f"vcenter.insecure: true in {estate.file_of('site', name)}")
    return list(out.values())


def each_vcenter(vcenters: Mapping[str, VCenter], read: Callable[[str, VCenter], T]
                 ) -> tuple[dict[str, T], dict[str, VSphereError]]:
    """``read(url, vc)`` for every vCenter at once (a thread each: one province's vCenter
    answering slowly does not hold up the other's). Out: (URL → result, URL → the
    VSphereError of each that failed), both in URL order."""
    if len(vcenters) <= 1:
        jobs = {url: _attempt(read, url, vc) for url, vc in vcenters.items()}
    else:
        with ThreadPoolExecutor(max_workers=len(vcenters),
                                thread_name_prefix="vcenter") as pool:
            futures = {url: pool.submit(_attempt, read, url, vc)
                       for url, vc in vcenters.items()}
            jobs = {url: future.result() for url, future in futures.items()}
    done = {url: value for url, (value, error) in sorted(jobs.items()) if error is None}
    failed = {url: error for url, (_, error) in sorted(jobs.items()) if error is not None}
    return done, failed  # type: ignore[return-value]


def _attempt(read: Callable[[str, VCenter], T], url: str,
             vc: VCenter) -> tuple[T | None, VSphereError | None]:
    try:
        return read(url, vc), None
    except VSphereError as exc:
        return None, exc


def read_facts(vcenters: Mapping[str, VCenter], names: Collection[str],
               device_cache: Path | None = None) -> dict[str, Inventory]:
    """Read each vCenter (URL → Inventory), all at once, with the device lists of the VMs
    named in ``names`` (the ones a plan compares: :func:`compared`): from ``device_cache``
    (the state folder's :attr:`Paths.device_cache`) for VMs whose configuration has not
    changed since they were read, else from vCenter. Constant number of requests per
    vCenter. The first vCenter (in URL order) that failed raises its VSphereError."""
    facts, failed = read_each(vcenters, names, device_cache)
    for error in failed.values():
        raise error
    return facts


def read_each(vcenters: Mapping[str, VCenter], names: Collection[str],
              device_cache: Path | None = None
              ) -> tuple[dict[str, Inventory], dict[str, VSphereError]]:
    """:func:`read_facts`, but a vCenter lost mid-read does not hide the others: out are
    the facts of those read and the failures (URL → the VSphereError naming it)."""
    def one(url: str, vc: VCenter) -> Inventory:
        return read_inventory(vc, lambda found: found.name in names or (
                                  found.uuid is not None and found.uuid in names),
                              cache=DeviceCache.load(device_cache, url))
    return each_vcenter(vcenters, one)


def compared(vms: Iterable[VM]) -> set[str]:
    """What :func:`read_facts` must read the devices of to plan ``vms``: their names, and
    for an existing VM its name in vCenter and its instance UUID (a renamed VM is found by
    it)."""
    out: set[str] = set()
    for vm in vms:
        out.add(vm.name)
        if vm.existing is not None:
            out.add(vm.existing.vm)
            if vm.existing.uuid:
                out.add(vm.existing.uuid)
    return out


