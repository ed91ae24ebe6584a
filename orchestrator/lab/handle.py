"""A running lab known by its two directories: the estate it serves and the state it runs in.

What the test session's lab and the benchmarks' private vcsim share: the estate, the paths
under the state directory, and how to reach the lab's vCenter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.adapters import vsphere
from orchestrator.estate import Estate, load_estate
from orchestrator.estate.secrets import Secrets
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
        the password from the lab's vault."""
        estate = self.estate
        s = estate.sites[site] if site else next(iter(estate.sites.values()))
        paths = self.paths
        return vsphere.Endpoint(
            url=s.vcenter.url, username=s.vcenter.username,
            password=Secrets(paths).get(s.vcenter.password),
            ca_bundle=paths.ca_bundle(s.vcenter.ca_bundle))
