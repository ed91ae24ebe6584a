"""Resolve ``{vault: key}`` references of the estate against its vault file."""

from __future__ import annotations

from functools import cached_property

from orchestrator.adapters.vault import read_vault
from orchestrator.errors import SecretError
from orchestrator.estate.model import SecretRef
from orchestrator.settings import Paths


class Secrets:
    """Reads the vault once, on first use; never prints a value."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    @cached_property
    def _values(self) -> dict[str, str]:
        if not self.paths.vault_file.exists():
            raise SecretError(f"{self.paths.vault_file}: no vault file (for the lab, "
                              "`hopnhat lab up` creates it)")
        return read_vault(self.paths.vault_file, self.paths.vault_password_file)

    def get(self, ref: SecretRef) -> str:
        try:
            return self._values[ref.vault]
        except KeyError:
            raise SecretError(f"{self.paths.vault_file}: the vault holds no key "
                              f"{ref.vault!r}") from None
