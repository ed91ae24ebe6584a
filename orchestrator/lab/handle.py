"""A running lab known by its two directories: the estate it serves and the state it runs in.

What the test session's lab and the benchmarks' private vcsim share: the estate, the paths
under the state directory, and how to reach the lab's vCenter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.adapters import vsphere
from orchestrator.errors import LabError
from orchestrator.estate import Estate, load_estate
from orchestrator.estate.secrets import Secrets
from orchestrator.lab.config import LabVCenter, lab_vcenter_of
from orchestrator.lab.processes import ProcessRecord, ProcessTable
from orchestrator.settings import Paths


@dataclass
class LabDirs:
    """A lab by its estate directory and its state directory."""

    estate_dir: Path
    state_dir: Path

    @property
    def estate(self) -> Estate:
        """The estate, read again on each use (a subclass may keep the first)."""
        return load_estate(self.estate_dir)

    @property
    def paths(self) -> Paths:
        return Paths(self.state_dir, self.estate)

    def endpoint(self, site: str | None = None) -> vsphere.Endpoint:
        """How to reach the vCenter of ``site`` (by default the estate's first site), with
        its user name, the password from the lab's vault and its CA bundle."""
        estate = self.estate
        s = estate.sites[site] if site else next(iter(estate.sites.values()))
        paths = self.paths
        return vsphere.Endpoint(
            url=s.vcenter.url, username=s.vcenter.username,
            password=Secrets(paths).get(s.vcenter.password),
            ca_bundle=paths.ca_bundle(s.vcenter.ca_bundle),
            sites=tuple(n for n, o in estate.sites.items() if o.vcenter.url == s.vcenter.url))

    def vcenter(self, site: str | None = None) -> LabVCenter:
        """The lab's vCenter of ``site`` (by default the estate's first site)."""
        estate = self.estate
        return lab_vcenter_of(estate, site or next(iter(estate.sites)))

    def vcsim(self, site: str | None = None) -> ProcessRecord:
        """The running simulator of ``site``'s vCenter (address: its SDK URL; details:
        ``cafile``). Raises LabError when it is not running."""
        vcenter = self.vcenter(site)
        record = ProcessTable(self.paths.lab).running(vcenter.name)
        if record is None:
            raise LabError(f"{vcenter.name} ({vcenter.describe()}) is not running")
        return record
