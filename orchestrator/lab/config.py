"""The lab's own sizing (``<estate>/lab.yml``) and the vcsim model built from the estate.

The estate says what exists (datacenters, clusters, datastores, port groups, templates);
lab.yml says how big the simulated hardware is. Only the lab reads lab.yml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.errors import EstateError, LabError
from orchestrator.estate.checks import Problems
from orchestrator.estate.loader import read_yaml, validate_file
from orchestrator.estate.model import Estate


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


def vcenter_endpoint(estate: Estate) -> tuple[str, str, int]:
    """The one vCenter the lab simulates: (URL, host, port). Every site must name it."""
    urls = {site.vcenter.url for site in estate.sites.values()}
    if len(urls) != 1:
        raise LabError("the lab simulates one vCenter, but the sites name "
                       f"{len(urls)}: {', '.join(sorted(urls))}")
    url = urls.pop()
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise LabError(f"{url}: the lab's vCenter speaks HTTPS only")
    if not parts.hostname.startswith("127."):
        raise LabError(f"{url}: the lab listens on loopback only (127.0.0.0/8)")
    return url, parts.hostname, parts.port or 443


def vcsim_model(estate: Estate, config: LabConfig, lab_dir: Path) -> dict[str, Any]:
    """The JSON model the lab's vcsim serves: a datacenter per site, named as the estate
    names it, sized by lab.yml."""
    _, host, port = vcenter_endpoint(estate)
    vcsim_dir = lab_dir / "vcsim"
    datacenters = []
    for site in estate.sites.values():
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
        "listen": f"{host}:{port}",
        "tls": {"cert": str(vcsim_dir / "cert.pem"), "key": str(vcsim_dir / "key.pem")},
        "credentials_file": str(vcsim_dir / "credentials.json"),
        "ready_file": str(vcsim_dir / "vcsim.ready"),
        "delays": config.delays.model_dump(),
        "datacenters": datacenters,
    }
