"""ansible-vault files: the one place secrets are stored at rest.

Uses ansible-core's own VaultLib, so files stay compatible with ``ansible-vault`` and
AWX, and no password ever passes through argv.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import SecretError


def read_password(password_file: Path) -> bytes:
    """The vault password from its file (first line, trailing newline stripped)."""
    try:
        raw = password_file.read_bytes()
    except OSError as exc:
        raise SecretError(f"{password_file}: cannot read the vault password file "
                          f"({exc.strerror or exc.__class__.__name__})") from None
    password = raw.splitlines()[0].strip() if raw.strip() else b""
    if not password:
        raise SecretError(f"{password_file}: the vault password file is empty")
    return password


def _vault(password_file: Path) -> Any:
    # ansible-core is imported only when a vault is opened: it costs 0.1 s at start-up
    from ansible.parsing.vault import VaultLib, VaultSecret

    return VaultLib([("default", VaultSecret(read_password(password_file)))])


def read_vault(path: Path, password_file: Path) -> dict[str, str]:
    """Decrypt ``path`` and return its key → value mapping (values as strings)."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise SecretError(f"{path}: cannot read the vault file "
                          f"({exc.strerror or exc.__class__.__name__})") from None
    from ansible.errors import AnsibleError

    try:
        plain = _vault(password_file).decrypt(blob)
    except AnsibleError:
        raise SecretError(f"{path}: cannot decrypt the vault file with the password in "
                          f"{password_file} (wrong password, or not an ansible-vault file)"
                          ) from None
    data = yaml.safe_load(plain)
    if not isinstance(data, dict):
        raise SecretError(f"{path}: the vault must hold a mapping of keys to secrets")
    return {str(k): str(v) for k, v in data.items()}


def write_vault(path: Path, password_file: Path, secrets: dict[str, str]) -> None:
    """Encrypt ``secrets`` into ``path`` (0600, written atomically)."""
    plain = yaml.safe_dump(dict(sorted(secrets.items())), allow_unicode=True).encode()
    blob = _vault(password_file).encrypt(plain)
    write_private(path, blob)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)
