"""The lab's own sizing (``<estate>/lab.yml``) and the vcsim model built from the estate.

The estate says what exists (datacenters, clusters, datastores, port groups, templates);
lab.yml says how big the simulated hardware is. Only the lab reads lab.yml.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.errors import EstateError, LabError
from orchestrator.estate.checks import Problems
from orchestrator.estate.loader import read_yaml, validate_file
from orchestrator.estate.model import Estate, SecretRef, Site


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterSpec(_Strict):
    hosts: Annotated[int, Field(ge=1, le=64)] = 4
    host_cpu_cores: Annotated[int, Field(ge=1)] = 32
    host_cpu_mhz: Annotated[int, Field(ge=1)] = 2600
    host_memory_mb: Annotated[int, Field(ge=1024)] = 262144


class DatastoreSpec(_Strict):
    capacity_gb: Annotated[float, Field(gt=0)] = 4000
    free_gb: Annotated[float, Field(ge=0)] = 3600


class TemplateSpec(_Strict):
    cpu: int = 2
    memory_mb: int = 2048
    disk_gb: int = 20


class Delays(_Strict):
    delay_ms: Annotated[int, Field(ge=0)] = 0
    jitter: Annotated[float, Field(ge=0)] = 0.0
    methods: dict[str, Annotated[int, Field(ge=0)]] = {}


class DataSpec(_Strict):
    size_mb: Annotated[float, Field(gt=0)] = 20
    files: Annotated[int, Field(ge=1)] = 150
    change_rate: Annotated[float, Field(ge=0, le=1)] = 0.05


class ForeignVM(_Strict):
    """A VM that exists in vCenter but is not hopnhat's (tests of ownership)."""

    name: str
    datacenter: str
    cluster: str
    datastore: str
    portgroup: str
    cpu: int = 1
    memory_mb: int = 1024
    disk_gb: int = 10
    power_on: bool = False


class LabConfig(_Strict):
    clusters: dict[str, ClusterSpec] = {}
    datastores: dict[str, DatastoreSpec] = {}
    template: TemplateSpec = TemplateSpec()
    delays: Delays = Delays()
    data: DataSpec = DataSpec()
    repository_capacity_mb: dict[str, int] = {}
    foreign_vms: list[ForeignVM] = []

    def cluster(self, name: str) -> ClusterSpec:
        return self.clusters.get(name) or self.clusters.get("default") or ClusterSpec()

    def datastore(self, name: str) -> DatastoreSpec:
        return self.datastores.get(name) or self.datastores.get("default") or DatastoreSpec()


def load_lab_config(estate: Estate) -> LabConfig:
    """``lab.yml`` beside the estate, or the defaults when there is none."""
    path = Path(estate.root) / "lab.yml"
    if not path.exists():
        return LabConfig()
    problems = Problems()
    config = validate_file(LabConfig, read_yaml(path, "lab.yml", problems), "lab.yml", problems)
    if problems or config is None:
        raise EstateError(problems.items)
    return config


@dataclass(frozen=True)
class LabVCenter:
    """One vCenter the lab simulates: one vcsim for every distinct URL the sites name.

    ``name`` is its process name and the folder under the lab's state (``lab/<name>/``:
    model, certificate, credentials, ready file, log): ``vcsim`` when the estate names one
    vCenter, else ``vcsim-<site>`` after the first site naming it (``vcsim-danang``)."""

    name: str
    url: str
    host: str
    port: int
    sites: tuple[str, ...]
    username: str
    password: SecretRef
    ca_bundle: str | None

    def describe(self) -> str:
        """``https://…/sdk (site danang)``: how errors name it."""
        label = "site" if len(self.sites) == 1 else "sites"
        return f"{self.url} ({label} {', '.join(self.sites)})"

    def folder(self, lab_dir: Path) -> Path:
        return lab_dir / self.name


def lab_vcenters(estate: Estate) -> list[LabVCenter]:
    """The vCenters the lab simulates, one per distinct URL of the sites (in site order).

    Raises LabError naming the sites when a URL is not https on a 127.x address, when two
    URLs share one address and port, or when sites sharing a URL disagree on its user name,
    password reference or CA bundle."""
    by_url: dict[str, list[Site]] = {}
    for site in estate.sites.values():
        by_url.setdefault(site.vcenter.url, []).append(site)
    single = len(by_url) == 1
    out: list[LabVCenter] = []
    seen: dict[tuple[str, int], str] = {}
    for url, sites in by_url.items():
        names = tuple(s.name for s in sites)
        where = f"site {', '.join(names)}"
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise LabError(f"{where}: {url}: the lab's vCenter speaks HTTPS only")
        if not parts.hostname.startswith("127."):
            raise LabError(f"{where}: {url}: the lab listens on loopback only (127.0.0.0/8)")
        port = parts.port or 443
        other = seen.get((parts.hostname, port))
        if other is not None:
            raise LabError(f"{where}: {url} and {other} listen on the same address "
                           f"{parts.hostname}:{port}: give each vCenter its own port")
        seen[(parts.hostname, port)] = url
        first = sites[0].vcenter
        for site in sites[1:]:
            vc = site.vcenter
            if (vc.username, vc.password, vc.ca_bundle) != \
                    (first.username, first.password, first.ca_bundle):
                raise LabError(f"sites {sites[0].name} and {site.name} name one vCenter "
                               f"({url}) with different user names, passwords or CA bundles")
        out.append(LabVCenter(
            name="vcsim" if single else f"vcsim-{names[0]}", url=url, host=parts.hostname,
            port=port, sites=names, username=first.username, password=first.password,
            ca_bundle=first.ca_bundle))
    return out


def lab_vcenter_of(estate: Estate, site: str) -> LabVCenter:
    """The lab vCenter of ``site``. Raises LabError for an unknown site."""
    for vcenter in lab_vcenters(estate):
        if site in vcenter.sites:
            return vcenter
    raise LabError(f"no site {site!r} in the estate (sites: {', '.join(estate.sites)})")


def vcsim_model(estate: Estate, config: LabConfig, lab_dir: Path,
                vcenter: LabVCenter | None = None) -> dict[str, Any]:
    """The JSON model one of the lab's vcsims serves: a datacenter per site of
    ``vcenter`` (default: the estate's only vCenter), named as the estate names it, sized by
    lab.yml. Its files live in ``lab_dir/<vcenter.name>/``."""
    if vcenter is None:
        every = lab_vcenters(estate)
        if len(every) != 1:
            raise LabError(f"the estate names {len(every)} vCenters: say which one to model")
        vcenter = every[0]
    vcsim_dir = vcenter.folder(lab_dir)
    datacenters = []
    for site in (estate.sites[name] for name in vcenter.sites):
        first_net = next(iter(site.networks.values()))
        datacenters.append({
            "name": site.datacenter,
            "clusters": [{"name": c, **config.cluster(c).model_dump()} for c in site.clusters],
            "datastores": [{"name": d, **config.datastore(d).model_dump()}
                           for d in site.datastores],
            "portgroups": [net.port_group for net in site.networks.values()],
            "templates": [{"name": t, **config.template.model_dump(),
                           "datastore": site.datastores[0], "portgroup": first_net.port_group,
                           "cluster": site.clusters[0]} for t in site.templates],
            "vms": [vm.model_dump(exclude={"datacenter"}) for vm in config.foreign_vms
                    if vm.datacenter == site.datacenter],
        })
    return {
        "listen": f"{vcenter.host}:{vcenter.port}",
        "tls": {"cert": str(vcsim_dir / "cert.pem"), "key": str(vcsim_dir / "key.pem")},
        "credentials_file": str(vcsim_dir / "credentials.json"),
        "ready_file": str(vcsim_dir / "vcsim.ready"),
        "delays": config.delays.model_dump(),
        "datacenters": datacenters,
    }
