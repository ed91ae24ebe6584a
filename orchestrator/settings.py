"""Where hopnhat keeps its state: the run ledger, keys, known_hosts, the lab.

The state folder is ``--state`` or ``$HOPNHAT_STATE``, else ``./.hopnhat``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from orchestrator.estate.model import Estate


@dataclass(frozen=True)
class Paths:
    """Every file hopnhat reads or writes outside the estate, from the state folder."""

    state: Path
    estate: Estate

    def _state_path(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else self.state / path

    @property
    def lab(self) -> Path:
        return self.state / "lab"

    @property
    def ledger(self) -> Path:
        return self.state / "ledger.sqlite"

    @property
    def device_cache(self) -> Path:
        """The device lists of VMs read from vCenter, by configuration version
        (:mod:`orchestrator.adapters.vsphere_cache`)."""
        return self.state / "cache" / "vcenter-devices.json"

    @property
    def private_key(self) -> Path:
        return self._state_path(self.estate.settings.ssh.private_key_file)

    @property
    def known_hosts(self) -> Path:
        return self._state_path(self.estate.settings.ssh.known_hosts_file)

    @property
    def vault_file(self) -> Path:
        path = Path(self.estate.settings.secrets.file)
        return path if path.is_absolute() else Path(self.estate.root) / path

    @property
    def vault_password_file(self) -> Path:
        env = os.environ.get("HOPNHAT_VAULT_PASSWORD_FILE")
        if env:
            return Path(env)
        configured = self.estate.settings.secrets.password_file
        if configured:
            path = Path(configured)
            return path if path.is_absolute() else Path(self.estate.root) / path
        return self.state / "vault-password"

    @property
    def restic_binary(self) -> str:
        """The restic program hopnhat runs on the control host: the estate's pinned
        ``restic.binary`` (state-relative unless absolute), else ``restic`` on PATH."""
        configured = self.estate.settings.restic.binary
        return "restic" if configured is None else str(self._state_path(configured))

    def repository_key(self, code: str) -> Path:
        """The private key of system ``code``'s account on its repository host."""
        return self.state / "ssh" / f"restic-{code}"

    def tls_ca(self, configured: str | None) -> Path | None:
        """A rest repository host's CA (``tls_ca``): relative paths are under the state
        folder."""
        return None if configured is None else self._state_path(configured)

    def ca_bundle(self, configured: str | None) -> Path | None:
        """A site's vCenter CA bundle: relative paths are under the state folder."""
        return None if configured is None else self._state_path(configured)
