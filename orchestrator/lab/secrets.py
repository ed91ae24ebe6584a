"""The lab's own secrets: a vault password, and a vault holding every secret the estate
references (vCenter password, restic repository passwords), each random."""

from __future__ import annotations

import secrets as _random
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from orchestrator.adapters.vault import read_vault, write_private, write_vault
from orchestrator.estate.endpoints import rest_secret_keys
from orchestrator.estate.model import SecretRef
from orchestrator.settings import Paths


def secret_refs(node: Any) -> Iterator[SecretRef]:
    """Every ``{vault: key}`` reference in a model tree."""
    if isinstance(node, SecretRef):
        yield node
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from secret_refs(getattr(node, name))
    elif isinstance(node, dict):
        for value in node.values():
            yield from secret_refs(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from secret_refs(value)


def ensure_lab_secrets(paths: Paths) -> list[str]:
    """Create the vault password file and the vault if missing, and add a random value for
    every referenced key the vault lacks. Returns the keys added (never values)."""
    if not paths.vault_password_file.exists():
        write_private(paths.vault_password_file, (_random.token_urlsafe(32) + "\n").encode())
    estate = paths.estate
    wanted = sorted({ref.vault for ref in secret_refs(
        [estate.settings, list(estate.sites.values()), list(estate.systems.values())])}
        | set(rest_secret_keys(estate)))
    current = read_vault(paths.vault_file, paths.vault_password_file) \
        if paths.vault_file.exists() else {}
    added = [key for key in wanted if key not in current]
    if added or not paths.vault_file.exists():
        for key in added:
            current[key] = _random.token_urlsafe(24)
        write_vault(paths.vault_file, paths.vault_password_file, current)
    return added
