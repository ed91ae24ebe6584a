"""ansible-vault files: the one place secrets are stored at rest.

Written with ansible-core's own VaultLib, so files stay compatible with ``ansible-vault`` and
AWX, and no password ever passes through argv. Read with :func:`decrypt_vault`, this
module's reader of the same format (``$ANSIBLE_VAULT;1.1|1.2;AES256``: PBKDF2-SHA256,
HMAC-SHA256 checked before AES-256-CTR): every hopnhat command reads the vault, and
importing ansible-core's vault code costs 0.3–0.45 s of each command's start; this costs
20 ms. A unit test holds the two to each other both ways.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import SecretError
from orchestrator.files import write_atomically


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


class VaultFormatError(ValueError):
    """Not an ansible-vault AES256 file, or a damaged one."""


class VaultPasswordError(ValueError):
    """The file's HMAC does not match: a wrong password (or a changed file)."""


_ITERATIONS = 10000  # ansible-vault's AES256 format, fixed


def decrypt_vault(blob: bytes, password: bytes) -> bytes:
    """The plaintext of an ansible-vault 1.1/1.2 AES256 file, as ansible-vault decrypts it.
    Raises VaultFormatError or VaultPasswordError (nothing of the content in the message)."""
    lines = blob.strip().splitlines()
    header = lines[0].strip().split(b";") if lines else []
    if (len(header) < 3 or header[0] != b"$ANSIBLE_VAULT" or header[1] not in (b"1.1", b"1.2")
            or header[2].strip() != b"AES256"):
        raise VaultFormatError("not an ansible-vault AES256 file")
    try:
        salt_hex, mac_hex, cipher_hex = binascii.unhexlify(b"".join(
            line.strip() for line in lines[1:])).split(b"\n", 2)
        salt, mac, ciphertext = (binascii.unhexlify(salt_hex), binascii.unhexlify(mac_hex),
                                 binascii.unhexlify(cipher_hex))
    except (binascii.Error, ValueError):
        raise VaultFormatError("the vault's body is not what ansible-vault writes") from None
    derived = hashlib.pbkdf2_hmac("sha256", password, salt, _ITERATIONS, 80)
    key, mac_key, iv = derived[:32], derived[32:64], derived[64:]
    if not hmac.compare_digest(hmac.new(mac_key, ciphertext, hashlib.sha256).digest(), mac):
        raise VaultPasswordError("the vault's HMAC does not match the password")
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    decryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    pad = padded[-1] if padded else 0
    if not 1 <= pad <= 16 or padded[-pad:] != bytes([pad]) * pad:
        raise VaultFormatError("the vault's padding is damaged")
    return padded[:-pad]


def read_vault(path: Path, password_file: Path) -> dict[str, str]:
    """Decrypt ``path`` and return its key → value mapping (values as strings)."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise SecretError(f"{path}: cannot read the vault file "
                          f"({exc.strerror or exc.__class__.__name__})") from None
    try:
        plain = decrypt_vault(blob, read_password(password_file))
    except (VaultFormatError, VaultPasswordError):
        raise SecretError(f"{path}: cannot decrypt the vault file with the password in "
                          f"{password_file} (wrong password, or not an ansible-vault file)"
                          ) from None
    return parse_secrets(path, plain)


_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_DECIMAL = re.compile(r"0|-?[1-9][0-9]*")


def _where(path: Path, node: yaml.Node | None, key: str | None = None) -> str:
    # a line number, and a key when it looks like a name: never the text of a line, which
    # may be a secret
    line = f"line {node.start_mark.line + 1}" if node is not None else "its top"
    named = f", key {key!r}" if key is not None and _NAME.fullmatch(key) else ""
    return f"{path}: at {line}{named}"


def _is_text(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and (
        node.tag == _STR or (node.tag == _INT and _DECIMAL.fullmatch(node.value) is not None))


def _text(path: Path, node: yaml.Node, key: str | None) -> str:
    """A scalar's value as written: strings as they are; a plain number only where its text
    reads back the same (``1234``, not ``0123``, which YAML reads as 83); anything else
    (booleans, null, dates, floats that change) refused, never silently turned into text."""
    if not isinstance(node, yaml.ScalarNode):
        raise SecretError(f"{_where(path, node, key)}: a vault value must be a string, not "
                          f"a {'list' if isinstance(node, yaml.SequenceNode) else 'mapping'}")
    if _is_text(node):
        return str(node.value)
    raise SecretError(f"{_where(path, node, key)}: a vault value that YAML does not read as "
                      "a string (a boolean, null, date or number that changes when read): "
                      "quote it")


def parse_secrets(path: Path, plain: bytes) -> dict[str, str]:
    """The key → value mapping of a vault's decrypted text ``plain`` (read from ``path``).

    Raises SecretError naming ``path`` and a line number — never a line's text, which may
    hold a secret — when the text is not YAML, not a mapping, or has a key twice, a key or
    value that is not a string (lists, mappings, booleans, null…)."""
    try:
        root = yaml.compose(plain, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        if isinstance(exc, yaml.reader.ReaderError):  # not UTF-8, or a control character
            text = plain.decode("utf-8", "replace")
            line = f" (line {text[:max(exc.position, 0)].count(chr(10)) + 1})"
        raise SecretError(f"{path}: the decrypted vault is not valid YAML{line}") from None
    if not isinstance(root, yaml.MappingNode):
        raise SecretError(f"{path}: the vault must hold a mapping of keys to secrets")
    secrets: dict[str, str] = {}
    for key_node, value_node in root.value:
        if not _is_text(key_node):
            raise SecretError(f"{_where(path, key_node)}: a vault key must be a string")
        key = str(key_node.value)
        if key in secrets:
            raise SecretError(f"{_where(path, key_node, key)}: the key is there twice")
        secrets[key] = _text(path, value_node, key)
    return secrets


def write_vault(path: Path, password_file: Path, secrets: dict[str, str]) -> None:
    """Encrypt ``secrets`` into ``path`` (0600, written atomically)."""
    plain = yaml.safe_dump(dict(sorted(secrets.items())), allow_unicode=True).encode()
    blob = _vault(password_file).encrypt(plain)
    write_private(path, blob)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only, atomically."""
    write_atomically(path, data, 0o600)
