"""hopnhat's reader of ansible-vault files against ansible-core's own VaultLib: what one
encrypts the other decrypts, and a wrong password or a changed file is refused without a
word of the content."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.parsing.vault import VaultLib, VaultSecret

from orchestrator.adapters.vault import (
    VaultFormatError,
    VaultPasswordError,
    decrypt_vault,
    read_vault,
    write_vault,
)
from orchestrator.errors import SecretError

PASSWORD = b"correct horse battery staple"
SECRET = "restic_password_qlvb: 'Đà Nẵng ¶ 7f3a'\nvcenter_password: s3cr3t\n"


def ansible_encrypt(plain: bytes, vault_id: str | None = None) -> bytes:
    lib = VaultLib([(vault_id or "default", VaultSecret(PASSWORD))])
    return bytes(lib.encrypt(plain, vault_id=vault_id))


@pytest.mark.parametrize("plain", [SECRET.encode(), b"", b"x" * 16, b"y" * 1000])
def test_what_ansible_encrypts_is_read_back(plain: bytes) -> None:
    assert decrypt_vault(ansible_encrypt(plain), PASSWORD) == plain


def test_a_vault_id_file_1_2_is_read_back() -> None:
    blob = ansible_encrypt(SECRET.encode(), vault_id="hopnhat")
    assert blob.startswith(b"$ANSIBLE_VAULT;1.2;AES256;hopnhat\n")
    assert decrypt_vault(blob, PASSWORD) == SECRET.encode()


def test_what_hopnhat_writes_ansible_reads_and_hopnhat_reads(tmp_path: Path) -> None:
    password_file = tmp_path / "vault-password"
    password_file.write_bytes(PASSWORD + b"\n")
    secrets = {"restic_password_qlvb": "Đà Nẵng ¶ 7f3a", "vcenter_password": "s3cr3t"}
    write_vault(tmp_path / "secrets.vault.yml", password_file, secrets)
    blob = (tmp_path / "secrets.vault.yml").read_bytes()
    assert b"s3cr3t" not in blob
    assert b"s3cr3t" in bytes(VaultLib([("default", VaultSecret(PASSWORD))]).decrypt(blob))
    assert read_vault(tmp_path / "secrets.vault.yml", password_file) == secrets


def test_a_wrong_password_is_refused() -> None:
    with pytest.raises(VaultPasswordError):
        decrypt_vault(ansible_encrypt(SECRET.encode()), b"not the password")


def test_a_changed_file_is_refused_before_decrypting() -> None:
    blob = bytearray(ansible_encrypt(SECRET.encode()))
    last = blob.rstrip().rindex(b"\n") + 5  # a hex digit of the ciphertext
    blob[last] = ord("0") if blob[last] != ord("0") else ord("1")
    with pytest.raises((VaultPasswordError, VaultFormatError)):
        decrypt_vault(bytes(blob), PASSWORD)


@pytest.mark.parametrize("blob", [b"", b"plain: text\n", b"$ANSIBLE_VAULT;1.1;AES\n00\n",
                                  b"$ANSIBLE_VAULT;1.1;AES256\nnot hex\n",
                                  b"$ANSIBLE_VAULT;1.1;AES256\n6162\n"])
def test_what_is_not_a_vault_is_named_so(blob: bytes) -> None:
    with pytest.raises(VaultFormatError):
        decrypt_vault(blob, PASSWORD)


def test_read_vault_names_the_files_and_nothing_of_the_content(tmp_path: Path) -> None:
    vault, password_file = tmp_path / "secrets.vault.yml", tmp_path / "vault-password"
    vault.write_bytes(ansible_encrypt(SECRET.encode()))
    password_file.write_bytes(b"bad-password-9q\n")
    with pytest.raises(SecretError) as caught:
        read_vault(vault, password_file)
    message = str(caught.value)
    assert str(vault) in message and str(password_file) in message
    assert "wrong password" in message
    assert "s3cr3t" not in message and "bad-password-9q" not in message
