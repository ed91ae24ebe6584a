"""The lab's own sizing (``<estate>/lab.yml``) and the vcsim model built from the estate.

The estate says what exists (datacenters, clusters, datastores, port groups, templates);
lab.yml says how big the simulated hardware is. Only the lab reads lab.yml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.errors import EstateError, LabError
from orchestrator.estate.checks import Problems
from orchestrator.estate.loader import read_yaml, validate_file
from orchestrator.estate.model import Estate, IPv4, SecretRef, Site
from orchestrator.lab.guests import is_guest_name


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
    #: main records (applications, documents) each guest database is seeded with
    db_rows: Annotated[int, Field(ge=1, le=10_000_000)] = 20000


#: A folder name under a datacenter's VM folder (one part of ``LabVM.folder``).
_FOLDER_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,79}$")
#: The guest's own hostname (what ``SET.guest.hostName`` reports and the guest's UTS name).
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
#: ``data``: a folder name under the guest's /srv.
_DATA_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
#: What main.go writes before a legacy VM's guest key in its ``config.annotation``; the
#: hypervisor keys that VM's guest by what follows.
GUEST_ANNOTATION = "hopnhat-lab-guest: "
#: The extraConfig key under which a lab VM's guest's SSH host key fingerprint is published
#: (``SHA256:<base64, no padding>``, as ``ssh-keygen -lf`` prints it).
FINGERPRINT_KEY = "guestinfo.hopnhat.ssh-host-key-sha256"


class LabVM(_Strict):
    """A VM that exists in vCenter when the lab starts, not built by hopnhat: a plain
    "foreign" VM (tests of ownership), or a **legacy** VM when it runs a real guest (an
    sshd, as hopnhat's own VMs do) — one a former province built by hand, reachable only
    with the province team's own SSH key (the lab's operator key).

    ``folder``: a path of folders under the datacenter's VM folder (``Legacy/QLVB``, made
    as needed); ``ip``/``hostname``: the guest info vCenter reports; ``attributes``: custom
    attribute values; ``extra_config``: plain extraConfig keys; ``data``: a folder under
    the guest's /srv seeded once with the lab's synthetic application data; ``guest``: run
    a real guest (default: when ``ip`` is set); ``power_on`` (default: when it has a
    guest); ``publish_fingerprint``: write the guest's host key fingerprint into the VM's
    extraConfig (:data:`FINGERPRINT_KEY`) once its sshd is up, as a province's team would
    have recorded it."""

    name: Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[^\x00-\x1f\x7f/]+$")]
    datacenter: str
    cluster: str
    datastore: str
    portgroup: str
    cpu: int = 1
    memory_mb: int = 1024
    disk_gb: int = 10
    power_on: bool | None = None
    folder: str = ""
    extra_disks_gb: list[Annotated[float, Field(gt=0)]] = []
    ip: IPv4 | None = None
    hostname: str | None = None
    attributes: dict[Annotated[str, Field(min_length=1, max_length=80)], str] = {}
    extra_config: dict[Annotated[str, Field(min_length=1, max_length=255)], str] = {}
    data: str | None = None
    guest: bool | None = None
    publish_fingerprint: bool = False

    @field_validator("folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        if value and not all(_FOLDER_PART.match(part) for part in value.split("/")):
            raise ValueError(f"folder {value!r}: a path of folder names (letters, digits, "
                             "' ', '.', '_', '-'; each starting with a letter or digit) "
                             "joined by '/'")
        return value

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        if value is not None and not _HOSTNAME.match(value):
            raise ValueError(f"hostname {value!r}: letters, digits and '-' (at most 63)")
        return value

    @field_validator("data")
    @classmethod
    def _data(cls, value: str | None) -> str | None:
        if value is not None and not _DATA_FOLDER.match(value):
            raise ValueError(f"data {value!r}: a folder name under /srv (letters, digits, "
                             "'_', '-')")
        return value

    @field_validator("extra_config")
    @classmethod
    def _extra_config(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.startswith("SET.") or key == "ip0" or key == FINGERPRINT_KEY:
                raise ValueError(f"extra_config {key!r}: the simulator takes SET.* and ip0 "
                                 "as instructions (write ip and hostname instead), and "
                                 f"{FINGERPRINT_KEY} is publish_fingerprint's")
        return value

    @model_validator(mode="after")
    def _guest(self) -> LabVM:
        if self.runs_guest:
            if self.ip is None:
                raise ValueError(f"{self.name}: a guest needs an ip")
            if not self.ip.is_loopback:
                raise ValueError(f"{self.name}: ip {self.ip}: the lab's guests listen on "
                                 "loopback addresses only (127.0.0.0/8)")
            if self.hostname is None and not _HOSTNAME.match(self.name):
                raise ValueError(f"{self.name}: the name cannot be a hostname: give the "
                                 "VM a hostname")
        else:
            for what, value in (("data", self.data is not None),
                                ("publish_fingerprint", self.publish_fingerprint)):
                if value:
                    raise ValueError(f"{self.name}: {what} needs a guest (an ip, and guest "
                                     "not false)")
        return self

    @property
    def runs_guest(self) -> bool:
        """It runs a real guest (is a legacy VM): ``guest``, by default when it has an ip."""
        return self.ip is not None if self.guest is None else self.guest

    @property
    def powered_on(self) -> bool:
        """Powered on at start: ``power_on``, by default when it runs a guest."""
        return self.runs_guest if self.power_on is None else self.power_on

    @property
    def guest_key(self) -> str:
        """``<name>.<datacenter lowercased>``: names its guest (folder ``guests/<key>``,
        process ``guest-<key>``) apart from hopnhat's own VMs and the other province's VM
        of the same name."""
        return f"{self.name}.{self.datacenter.lower()}"

    def model_spec(self) -> dict[str, Any]:
        """The VM as vcsim's model file says it (main.go's ``vmSpec``)."""
        spec: dict[str, Any] = {
            "name": self.name, "cluster": self.cluster, "datastore": self.datastore,
            "portgroup": self.portgroup, "cpu": self.cpu, "memory_mb": self.memory_mb,
            "disk_gb": self.disk_gb, "power_on": self.powered_on,
        }
        extra = {
            "folder": self.folder, "extra_disks_gb": list(self.extra_disks_gb),
            "ip": "" if self.ip is None else str(self.ip), "hostname": self.hostname or "",
            "attributes": dict(self.attributes), "extra_config": dict(self.extra_config),
            "annotation": f"{GUEST_ANNOTATION}{self.guest_key}" if self.runs_guest else "",
        }
        spec.update({key: value for key, value in extra.items() if value})
        return spec


#: The name lab.yml's ``foreign_vms`` entries first had.
ForeignVM = LabVM


def legacy_vms(estate: Estate, config: LabConfig) -> dict[str, LabVM]:
    """The lab's legacy VMs (those that run a guest) by guest key.

    Raises LabError naming them when two share a guest key or an address, when one's
    guest key is the name of a VM hopnhat builds or of a repository host, when its address
    is one hopnhat gives a VM of its own or a repository host, or when its datacenter is
    no site's."""
    datacenters = {site.datacenter for site in estate.sites.values()}
    taken_names = {vm.name: f"VM {vm.name} of the estate" for vm in estate.vms}
    taken_names.update({host.name: f"repository host {host.name}"
                        for host in estate.settings.repository_hosts})
    taken_ips = {str(vm.ip): f"VM {vm.name} of the estate" for vm in estate.vms
                 if getattr(vm, "existing", None) is None}  # an adopted VM may be this one
    taken_ips.update({str(host.address): f"repository host {host.name}"
                      for host in estate.settings.repository_hosts})
    out: dict[str, LabVM] = {}
    for vm in config.foreign_vms:
        if not vm.runs_guest:
            continue
        where = f"lab.yml: {vm.datacenter}/{vm.folder + '/' if vm.folder else ''}{vm.name}"
        if vm.datacenter not in datacenters:
            raise LabError(f"{where}: no site has datacenter {vm.datacenter} "
                           f"(datacenters: {', '.join(sorted(datacenters))})")
        key = vm.guest_key
        if not is_guest_name(key):
            raise LabError(f"{where}: its guest key {key!r} (<name>.<datacenter lowercased>) "
                           "is not a usable guest name (letters, digits, '.', '_', '-'; at "
                           "most 63)")
        other = out.get(key)
        if other is not None:
            raise LabError(f"{where} and {other.datacenter}/{other.folder}/{other.name} have "
                           f"the same guest key {key}: rename one")
        if key in taken_names:
            raise LabError(f"{where}: its guest key {key} is the name of "
                           f"{taken_names[key]}")
        ip = str(vm.ip)
        if ip in taken_ips:
            raise LabError(f"{where}: ip {ip} is also the address of {taken_ips[ip]}")
        taken_ips[ip] = f"legacy VM {vm.datacenter}/{vm.name}"
        out[key] = vm
    return out


class LabConfig(_Strict):
    clusters: dict[str, ClusterSpec] = {}
    datastores: dict[str, DatastoreSpec] = {}
    template: TemplateSpec = TemplateSpec()
    delays: Delays = Delays()
    data: DataSpec = DataSpec()
    repository_capacity_mb: dict[str, int] = {}
    foreign_vms: list[LabVM] = []

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
            "vms": [vm.model_spec() for vm in config.foreign_vms
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
