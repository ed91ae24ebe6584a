"""The estate schema (pydantic). Every mapping forbids unknown keys.

Files of the estate directory and what each holds:
- ``estate.yml``: the estate's id and name, recovery tiers, secrets (vault), SSH access,
  repository hosts, provisioning and configuration settings (:class:`EstateFile`);
- ``sites/*.yml``: one site (data centre) each (:class:`Site`);
- ``systems/*.yml``: one system each (:class:`System`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from orchestrator.estate.databases import Databases
from orchestrator.estate.drills import NightlyDrills
from orchestrator.estate.notifications import Notifications, NotifyCommandGone
from orchestrator.estate.recovery import Drill
from orchestrator.estate.schema import STRICT
from orchestrator.estate.schema import Duration as Duration
from orchestrator.estate.schema import PositiveDuration as PositiveDuration
from orchestrator.estate.schema import parse_duration as parse_duration
from orchestrator.estate.secret_ref import SecretRef as SecretRef
from orchestrator.estate.values import (
    AbsPath,
    Bool,
    Code,
    Float,
    HostFolder,
    Int,
    Label,
    Name,
    Schedule,
)

IPv4 = Annotated[ipaddress.IPv4Address, PlainSerializer(str, return_type=str)]
Subnet = Annotated[ipaddress.IPv4Network, PlainSerializer(str, return_type=str)]


class Strict(BaseModel):
    model_config = STRICT


class Tier(Strict):
    """Recovery targets of a tier (NIST SP 800-34 sense)."""

    rpo: PositiveDuration
    rto: PositiveDuration
    drill_interval: PositiveDuration
    read_data_rotation: Annotated[Int, Field(ge=1, le=365)] = 7


class VaultSettings(Strict):
    """Where secrets live: an ansible-vault file, relative to the estate directory. The
    vault password comes from ``$HOPNHAT_VAULT_PASSWORD_FILE``, else ``password_file``
    (relative to the estate directory), else ``<state>/vault-password``."""

    file: str = "secrets.vault.yml"
    password_file: str | None = None


# a file ssh reads: no double quote (ssh's own quoting) and no control character
SSHPath = Annotated[str, Field(min_length=1, max_length=4096, pattern=r'^[^"\x00-\x1f\x7f]+$')]


class SSHSettings(Strict):
    """How hopnhat reaches hosts. Paths are relative to the state folder unless absolute.
    A session of hopnhat's own (drills, backup status) gives a host up once it has not
    answered ``alive_count`` probes sent every ``alive_interval`` (as ssh's
    ServerAliveInterval and ServerAliveCountMax)."""

    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "root"
    private_key_file: SSHPath = "ssh/id_ed25519"
    known_hosts_file: SSHPath = "known_hosts"
    alive_interval: Duration = timedelta(seconds=15)
    alive_count: Annotated[Int, Field(ge=1, le=100)] = 4

    @field_validator("alive_interval")
    @classmethod
    def _whole_seconds(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1) or value > timedelta(hours=1):
            raise ValueError("alive_interval must be between 1s and 1h")
        return value

    @property
    def alive(self) -> tuple[int, int]:
        """(interval in whole seconds, count), as :func:`orchestrator.adapters.ssh.connect`
        takes it."""
        return int(self.alive_interval.total_seconds()), self.alive_count


class ProvisioningSettings(Strict):
    concurrency: Annotated[Int, Field(ge=1, le=64)] = 8
    clones_per_host: Annotated[Int, Field(ge=1, le=16)] = 4
    clones_per_datastore: Annotated[Int, Field(ge=1, le=64)] = 8
    capacity_headroom_pct: Annotated[Float, Field(ge=0, lt=100)] = 10.0
    guest_ip_timeout: PositiveDuration = timedelta(minutes=5)


class ConfigurationSettings(Strict):
    """How ``hopnhat configure`` runs Ansible: ``forks`` hosts configured at once; before
    the playbook starts, up to ``connect_wait`` for every host to accept SSH (a VM just
    provisioned reports its IP before its sshd listens)."""

    forks: Annotated[Int, Field(ge=1, le=500)] = 20
    connect_wait: PositiveDuration = timedelta(minutes=2)


class VerificationSettings(Strict):
    """How ``hopnhat verify`` judges repositories: ``concurrency`` repositories at once; an
    anomaly when the latest snapshot's total size or file count is more than ``shrink_pct``
    % below, or ``growth_pct`` % above, the median of the ``history`` snapshots before it
    (judged from ``min_history`` of them); ``lock_wait`` for a live lock to go before
    ``check``; snapshots younger than ``copy_grace`` may still be on their way to the second
    copy; ``timeout`` for one restic command; ``notify_url`` (healthchecks-style) is pinged
    on start, success and failure (people are told through ``notifications:``); a snapshot
    dated more than ``clock_skew`` after verify's own clock is one planted in the future (the
    ``future`` check)."""

    concurrency: Annotated[Int, Field(ge=1, le=64)] = 4
    shrink_pct: Annotated[Float, Field(gt=0, le=100)] = 50.0
    growth_pct: Annotated[Float, Field(gt=0)] = 200.0
    history: Annotated[Int, Field(ge=1, le=50)] = 7
    min_history: Annotated[Int, Field(ge=1, le=50)] = 3
    lock_wait: Duration = timedelta(minutes=10)
    copy_grace: Duration = timedelta(hours=1)
    timeout: PositiveDuration = timedelta(hours=6)
    clock_skew: Duration = timedelta(minutes=10)
    notify_command: NotifyCommandGone = None  # an estate error naming notifications:
    notify_url: str | SecretRef | None = None
    #: read-data rotation (nights) of a system retired whole: its repository is read
    #: through once every so many nights (default: its tier's rotation)
    archive_read_data_rotation: Annotated[Int, Field(ge=1, le=3650)] | None = None

    @field_validator("notify_url")
    @classmethod
    def _http_url(cls, value: str | SecretRef | None) -> str | SecretRef | None:
        if isinstance(value, str) and not re.match(r"^https?://[^/\s]+\S*$", value):
            raise ValueError("notify_url must be an http:// or https:// URL (or {vault: key})")
        return value


class ResticSettings(Strict):
    """Which restic the estate's backup clients run, and hopnhat with them.

    ``binary`` unset: the distribution's restic (``/usr/bin/restic`` on a host, installed
    from its package when missing; ``restic`` on PATH on the control host). Set: a restic
    program on the control host (relative to the state folder unless absolute) whose
    SHA-256 must be ``sha256``: ``configure`` ships it to every backup client (checked
    before and after the copy) and hopnhat runs it on the control host too."""

    binary: Annotated[str, Field(min_length=1)] | None = None
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> ResticSettings:
        if (self.binary is None) != (self.sha256 is None):
            raise ValueError("binary and sha256 go together: the binary shipped to every "
                             "host is checked against the estate's sha256")
        return self

    @property
    def host_binary(self) -> str:
        """Where the restic program is on a backup client."""
        if self.sha256 is None:
            return DISTRIBUTION_RESTIC
        return f"/usr/local/lib/hopnhat/restic-{self.sha256[:16]}"


DISTRIBUTION_RESTIC = "/usr/bin/restic"


Port = Annotated[Int, Field(ge=1, le=65535)]


class RepositoryHost(Strict):
    """A backup repository host — normally in the secondary data centre.

    ``protocol: rest`` (what an estate should use): restic's rest-server, one append-only
    server per system on the system's own ``backup.port`` (its htpasswd holds that system's
    user only; ``backup.quota_gb`` is its ``--max-size``), and one server without
    append-only on ``maintenance_port`` whose only user is the control host's
    (``maintain``, ``retire``, reads from the control host). TLS with a certificate the
    estate's CA signed: ``tls_ca`` (relative to the state folder unless absolute) is that
    CA, which clients check the server against (never skipped). A client's credentials can
    add data to its own repository and do nothing else (lock files aside).

    ``protocol: sftp``: one chrooted SFTP account per system, reached with ssh on ``port``.
    NOT protected against a compromised client: the account that writes a system's
    backups can delete them too. For sites that only have SSH.

    ``role: vault``: the estate's vault (``vault:`` in estate.yml), at a third location. It
    serves REST on ``maintenance_port`` only, to the control host's credentials: no backup
    client has an account, a password or a route to it. ``hopnhat vault pull`` copies each
    system's snapshots into it with ``restic copy``, which only adds.
    """

    name: Name
    site: Name
    address: IPv4
    port: Port = 22
    storage_path: HostFolder
    capacity_gb: Annotated[Float, Field(gt=0)]
    protocol: Literal["rest", "sftp"] = "sftp"
    maintenance_port: Port | None = None
    tls_ca: Annotated[str, Field(min_length=1)] | None = None
    role: Literal["repository", "vault"] = "repository"

    @model_validator(mode="after")
    def _rest_settings(self) -> RepositoryHost:
        if self.role == "vault" and self.protocol != "rest":
            raise ValueError("a vault host serves REST (protocol: rest) to the control host "
                             "alone: its maintenance endpoint receives the copies hopnhat "
                             "pulls")
        if self.protocol == "rest":
            if self.maintenance_port is None or self.tls_ca is None:
                raise ValueError("a rest repository host needs maintenance_port (the control "
                                 "host's endpoint) and tls_ca (the CA that signed its "
                                 "certificate)")
            if self.maintenance_port == self.port:
                raise ValueError(f"maintenance_port {self.maintenance_port} is the ssh port")
        elif self.maintenance_port is not None or self.tls_ca is not None:
            raise ValueError("maintenance_port and tls_ca are for protocol: rest")
        return self

    @property
    def maintenance_user(self) -> str:
        """The control host's user on the maintenance endpoint."""
        return "hopnhat-maintenance"

    @property
    def maintenance_secret(self) -> str:
        """The vault key of the maintenance endpoint's password."""
        return "rest_maintenance_" + re.sub(r"[^A-Za-z0-9_]", "_", self.name)

    #: the user every system's own server gives its metrics to, and no repository (the name
    #: rest-server reserves for that when repositories are private)
    @property
    def metrics_user(self) -> str:
        return "metrics"

    @property
    def metrics_secret(self) -> str:
        """The vault key of the password the control host reads the system servers'
        metrics with (``verify``'s deletions check)."""
        return "rest_metrics_" + re.sub(r"[^A-Za-z0-9_]", "_", self.name)


class Vault(Strict):
    """``vault:`` of estate.yml: the isolated copy. The control host pulls each system's
    snapshots from its repository into its own repository on ``repository_host`` (a
    repository host with ``role: vault``) with ``restic copy`` — never pushed by a client,
    never deleted by deleting or damaging the main repository. ``schedule`` (a systemd
    OnCalendar expression) is when ``hopnhat schedule install``'s timer pulls; ``systems``
    limits the vault to those systems (default: every system with a backup). A system of an
    SFTP repository host that pushes its own second copy (``backup.copy``) keeps doing so
    and is not in the vault: its client can delete its main repository anyway, and its
    copy guards against losing that host; drop ``copy`` to have the vault hold it."""

    repository_host: Name
    schedule: Schedule = "*-*-* 06:30:00"
    systems: list[Name] | None = None

    def holds(self, code: str) -> bool:
        """Whether system ``code``'s snapshots are copied to the vault."""
        return self.systems is None or code in self.systems


class EstateFile(Strict):
    """``estate.yml``."""

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,30}$")]
    name: Label
    tiers: dict[Int, Tier]
    secrets: VaultSettings = VaultSettings()
    ssh: SSHSettings = SSHSettings()
    provisioning: ProvisioningSettings = ProvisioningSettings()
    configuration: ConfigurationSettings = ConfigurationSettings()
    repository_hosts: list[RepositoryHost] = []
    verification: VerificationSettings = VerificationSettings()
    restic: ResticSettings = ResticSettings()
    vault: Vault | None = None
    #: when and how much ``hopnhat drill nightly`` drills (orchestrator/estate/drills.py)
    nightly_drills: NightlyDrills = NightlyDrills()
    #: who is told of what, through Apprise (orchestrator/estate/notifications.py)
    notifications: Notifications = Notifications()
    # where people read the reports: handover evidence shows times here, offset written
    timezone: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$",
                                   max_length=64)] = "Asia/Ho_Chi_Minh"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (write it like "
                             "Asia/Ho_Chi_Minh)") from None
        return value


class VCenter(Strict):
    """A site's vCenter: reached over HTTPS only (its password crosses the network). The
    certificate is checked against ``ca_bundle`` (or the system's CAs); ``insecure: true``
    skips that check, and every command that connects then says so."""

    url: Annotated[str, Field(max_length=2048, pattern=r"^https://[^/\s]+(/\S*)?$")]
    username: Annotated[str, Field(min_length=1, max_length=200)]
    password: SecretRef
    ca_bundle: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    insecure: Bool = False
    timeout: PositiveDuration = timedelta(seconds=60)


class IPPool(Strict):
    start: IPv4
    end: IPv4

    @model_validator(mode="before")
    @classmethod
    def _from_range(cls, value: Any) -> Any:
        if isinstance(value, str) and "-" in value:
            start, end = value.split("-", 1)
            return {"start": start.strip(), "end": end.strip()}
        return value

    @model_validator(mode="after")
    def _ordered(self) -> IPPool:
        if int(self.end) < int(self.start):
            raise ValueError(f"pool ends ({self.end}) before it starts ({self.start})")
        return self

    @property
    def size(self) -> int:
        return int(self.end) - int(self.start) + 1

    def __contains__(self, ip: object) -> bool:
        return isinstance(ip, ipaddress.IPv4Address) and self.start <= ip <= self.end

    def addresses(self) -> Iterator[ipaddress.IPv4Address]:
        """The pool's addresses in order, generated as they are asked for."""
        return (ipaddress.IPv4Address(i) for i in range(int(self.start), int(self.end) + 1))


class Network(Strict):
    port_group: Name
    subnet: Subnet
    gateway: IPv4
    dns: list[IPv4] = []
    pool: IPPool

    @field_validator("subnet", mode="before")
    @classmethod
    def _subnet(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return ipaddress.IPv4Network(value, strict=True)
            except ValueError as exc:
                raise ValueError(f"{value!r} is not an IPv4 subnet: {exc}") from None
        return value


class Site(Strict):
    """``sites/<name>.yml``: one data centre."""

    name: Name
    title: Label = ""
    role: Literal["primary", "secondary"]
    vcenter: VCenter
    datacenter: Name
    clusters: Annotated[list[Name], Field(min_length=1)]
    datastores: Annotated[list[Name], Field(min_length=1)]
    networks: Annotated[dict[Name, Network], Field(min_length=1)]
    templates: Annotated[list[Name], Field(min_length=1)]
    drill_network: Name | None = None


# a vCenter folder path under a datacenter's VM folder: names of any script (vCenter
# writes a "/" inside a name as %2f), no control characters, "/" between folders
FolderPath = Annotated[str, Field(
    max_length=255, pattern=r"^[^\x00-\x1f\x7f/]+(/[^\x00-\x1f\x7f/]+)*$")]
InstanceUUID = Annotated[str, Field(
    pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]


class ExistingVM(Strict):
    """A VM that already runs and that hopnhat takes over (adopts) rather than builds: found
    in its site's datacenter by ``uuid`` (vCenter's instance UUID, which survives a rename)
    when given, else by its vCenter name ``vm`` (in ``folder``, a path under the
    datacenter's VM folder, when two VMs share the name). hopnhat reaches it at
    ``address``."""

    vm: Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[^\x00-\x1f\x7f/]+$")]
    folder: FolderPath | None = None
    uuid: InstanceUUID | None = None
    address: IPv4

    @field_validator("uuid")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return None if value is None else value.lower()

    def describe(self, datacenter: str) -> str:
        """``DC-QuangNam/QLVB/qlvb-db-01``: where an operator finds it in vCenter."""
        return "/".join(p for p in (datacenter, self.folder, self.vm) if p)


HARDWARE = ("cpu", "memory_mb", "disks_gb")


class VMRole(Strict):
    """A group of identical VMs of a system: ``<code>-<role>-NN``. hopnhat builds them,
    unless ``existing`` lists VMs that already run: hopnhat then adopts them (one each,
    ``count`` is their number), never builds, moves or destroys them, and changes their
    hardware only when ``manage_hardware`` says so (the hardware written here is then what
    they must have; without it, what differs is only shown)."""

    role: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{0,15}$")]
    count: Annotated[Int, Field(ge=1, le=500)] = 1
    site: Name
    cpu: Annotated[Int, Field(ge=1, le=128)] | None = None
    memory_mb: Annotated[Int, Field(ge=256, le=4 * 1024 * 1024)] | None = None
    disks_gb: Annotated[list[Annotated[Int, Field(ge=1, le=65536)]],
                        Field(min_length=1)] | None = None
    network: Name
    cluster: Name | None = None
    datastore: Name | None = None
    template: Name | None = None
    data: Bool = False
    ips: list[IPv4] | None = None
    existing: Annotated[list[ExistingVM], Field(min_length=1, max_length=500)] | None = None
    manage_hardware: Bool = False

    @model_validator(mode="before")
    @classmethod
    def _count_of_existing(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("existing"), list) \
                and "count" not in value:
            return {**value, "count": len(value["existing"]) or 1}
        return value

    @model_validator(mode="after")
    def _hardware(self) -> VMRole:
        missing = [name for name in HARDWARE if getattr(self, name) is None]
        if self.existing is None:
            if missing:
                raise ValueError(f"{', '.join(missing)} missing: hopnhat builds these VMs and "
                                 "needs their hardware (or list the VMs that already run "
                                 "under existing:)")
            if self.manage_hardware:
                raise ValueError("manage_hardware is for existing VMs (hopnhat always "
                                 "manages the hardware of the VMs it builds)")
            return self
        if self.count != len(self.existing):
            raise ValueError(f"count is {self.count} but existing lists {len(self.existing)} "
                             "VM(s): leave count out")
        if self.ips is not None:
            raise ValueError("ips is for VMs hopnhat builds: an existing VM's address is its "
                             "existing[].address")
        if self.template is not None:
            raise ValueError("template is for VMs hopnhat builds: an existing VM is not cloned")
        if self.manage_hardware and missing:
            raise ValueError(f"manage_hardware needs the hardware the VMs must have: "
                             f"{', '.join(missing)} missing")
        return self


class Retention(Strict):
    hourly: Annotated[Int, Field(ge=0)] = 0
    daily: Annotated[Int, Field(ge=0)] = 7
    weekly: Annotated[Int, Field(ge=0)] = 4
    monthly: Annotated[Int, Field(ge=0)] = 6
    yearly: Annotated[Int, Field(ge=0)] = 0


class SecondCopy(Strict):
    repository_host: Name


class Backup(Strict):
    repository_host: Name
    password: SecretRef
    paths: Annotated[list[AbsPath], Field(min_length=1)]
    exclude: list[str] = []
    pre_commands: list[str] = []
    #: databases dumped, each into its own snapshot, before the files backup
    databases: Databases = []
    schedule: Schedule
    randomized_delay: Duration = timedelta(minutes=5)
    retention: Retention = Retention()
    copy_to: SecondCopy | None = Field(default=None, alias="copy")
    #: a rest repository host: the port of this system's own append-only rest-server
    port: Port | None = None
    #: a rest repository host: the most this system's repository may hold (its server's
    #: --max-size); past it, its backups fail with "quota" and other systems' go on
    quota_gb: Annotated[Float, Field(gt=0)] | None = None
    #: the vault key of this system's password on its rest-server (default
    #: rest_password_<code>)
    rest_password: SecretRef | None = None

    def rest_secret(self, code: str) -> str:
        """The vault key of system ``code``'s rest-server password."""
        return self.rest_password.vault if self.rest_password else f"rest_password_{code}"

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Migration(Strict):
    """``migration:`` of a system: its move to site ``to`` by restore (``hopnhat migrate``).

    ``vms`` is the target description: the roles hopnhat builds at ``to`` (their ``site``
    may be left out). Each data-bearing role of the system has one here of the same name
    and count, whose VMs receive its data; they are named ``<code>-<role>-NN`` numbered
    after the system's own VMs of that role (``qlvbqn-db-01`` moves to ``qlvbqn-db-02``).
    At cutover ``stop_writes`` run on each source VM (the application goes read-only) and,
    should the cutover fail, ``start_writes`` put it back; the source then keeps running
    for ``parallel_run`` (one to two years in the provinces' plans). ``from_unit`` and
    ``to_unit`` name the units that sign the handover."""

    to: Name
    vms: Annotated[list[VMRole], Field(min_length=1)]
    stop_writes: list[Annotated[str, Field(min_length=1)]] = []
    start_writes: list[Annotated[str, Field(min_length=1)]] = []
    parallel_run: Duration = timedelta(days=365)
    from_unit: Label = ""
    to_unit: Label = ""

    @model_validator(mode="before")
    @classmethod
    def _site_is_to(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("vms"), list):
            roles = [{"site": value.get("to"), **r} if isinstance(r, dict) else r
                     for r in value["vms"]]
            return {**value, "vms": roles}
        return value

    @model_validator(mode="after")
    def _built_here(self) -> Migration:
        for i, role in enumerate(self.vms):
            if role.site != self.to:
                raise ValueError(f"vms[{i}].site is {role.site!r}: a migration builds at "
                                 f"its site to ({self.to!r})")
            if role.existing is not None:
                raise ValueError(f"vms[{i}].existing: a migration builds its VMs; it "
                                 "never adopts one")
        if self.parallel_run < timedelta(days=1):
            raise ValueError("parallel_run shorter than a day: write it like 365d")
        return self


class System(Strict):
    """``systems/<code>.yml``: one system (QLVB, DVC, …)."""

    name: Annotated[Label, Field(min_length=1)]
    code: Code
    tier: Int
    vms: Annotated[list[VMRole], Field(min_length=1)]
    backup: Backup | None = None
    drill: Drill = Drill()
    depends_on: list[Code] = []
    migration: Migration | None = None


class VM(BaseModel):
    """One VM the estate wants, derived from a system's :class:`VMRole` (not written by hand)."""

    model_config = ConfigDict(frozen=True)

    name: str
    system: str
    role: str
    index: int
    tier: int
    site: str
    datacenter: str
    cluster: str
    datastore: str
    template: str
    network: str
    port_group: str
    ip: IPv4
    prefix_length: int
    gateway: IPv4
    dns: list[IPv4]
    cpu: int | None  # None: an existing VM whose hardware the estate does not say
    memory_mb: int | None
    disks_gb: list[int] | None
    data: bool
    existing: ExistingVM | None = None  # a VM hopnhat adopts rather than builds
    manage_hardware: bool = True
    source: str | None = None  # a migration's target VM: the VM whose data it receives

    @property
    def hostname(self) -> str:
        return self.name

    @property
    def adopted(self) -> bool:
        """True for a VM the estate takes over (declared under ``existing``)."""
        return self.existing is not None

    def where(self) -> str:
        """Where an operator finds it in vCenter: ``DC-QuangNam/QLVB/qlvb-db-01`` for an
        existing VM, its estate name in its datacenter otherwise."""
        if self.existing is not None:
            return self.existing.describe(self.datacenter)
        return f"{self.datacenter}/{self.name}"


class Estate(BaseModel):
    """The whole estate, validated and cross-checked, with its derived VMs."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    root: str
    settings: EstateFile
    sites: dict[str, Site]
    systems: dict[str, System]
    vms: list[VM]
    files: dict[str, str] = {}
    targets: list[VM] = []  # the VMs migrations build (``System.migration``), not in vms

    @property
    def id(self) -> str:
        return self.settings.id

    def tier(self, number: int) -> Tier:
        return self.settings.tiers[number]

    def repository_host(self, name: str) -> RepositoryHost:
        return next(h for h in self.settings.repository_hosts if h.name == name)

    def vault_systems(self) -> list[str]:
        """The systems whose snapshots the vault receives, in order (none without one)."""
        vault = self.settings.vault
        if vault is None:
            return []
        return [code for code, system in sorted(self.systems.items())
                if system.backup is not None and system.backup.copy_to is None
                and vault.holds(code)]

    def vms_of(self, system: str) -> list[VM]:
        return [vm for vm in self.vms if vm.system == system]

    def targets_of(self, system: str) -> list[VM]:
        """The VMs system ``system``'s migration builds at its target site."""
        return [vm for vm in self.targets if vm.system == system]

    def file_of(self, kind: str, name: str) -> str:
        """The file that declares ``kind`` (``site`` or ``system``) ``name``, for messages."""
        return self.files.get(f"{kind}:{name}", "estate.yml")
