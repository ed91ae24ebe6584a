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


PLANTED = "PLANTED-7c0ffee"


def broken_vault(tmp_path: Path, plain: str) -> tuple[Path, Path]:
    vault, password_file = tmp_path / "secrets.vault.yml", tmp_path / "vault-password"
    vault.write_bytes(ansible_encrypt(plain.encode()))
    password_file.write_bytes(PASSWORD + b"\n")
    return vault, password_file


@pytest.mark.parametrize(("plain", "where"), [
    (f"a: ok\nvcenter_password: {PLANTED}: more\n", "line 2"),        # a colon in a value
    (f"a: ok\nb: '{PLANTED}\n", "line 3"),                               # an unclosed quote
    (f"a: ok\n\tb: {PLANTED}\n", "line 2"),                              # a tab indent
    (f"a: [{PLANTED}\n", "line 2"),                                      # an unclosed list
    (f"a: ok\nb: {PLANTED}\x01\n", "line 2"),                            # a control character
    (f"a: ok\n---\nb: {PLANTED}\n", "line 2"),                           # two documents
])
def test_a_vault_that_is_not_yaml_names_its_file_and_line_and_nothing_of_it(
        tmp_path: Path, plain: str, where: str) -> None:
    vault, password_file = broken_vault(tmp_path, plain)
    with pytest.raises(SecretError) as caught:
        read_vault(vault, password_file)
    message = str(caught.value)
    assert message.startswith(f"{vault}: ") and where in message, message
    assert PLANTED not in message and "more" not in message
    assert caught.value.__suppress_context__  # no traceback quoting the line behind it


@pytest.mark.parametrize(("plain", "fragment"), [
    (f"a: ok\na: {PLANTED}\n", "line 2, key 'a': the key is there twice"),
    (f"a: [{PLANTED}]\n", "line 1, key 'a': a vault value must be a string, not a list"),
    (f"a:\n  b: {PLANTED}\n", "line 2, key 'a': a vault value must be a string, not a mapping"),
    ("a: ok\nb: yes\n", "line 2, key 'b': a vault value that YAML does not read as a string"),
    ("a: ~\n", "line 1, key 'a': a vault value that YAML"),
    ("a: 0123\n", "key 'a': a vault value that YAML"),                   # YAML reads 83
    ("a: 1.50\n", "key 'a': a vault value that YAML"),
    (f"? [{PLANTED}]\n: x\n", "line 1: a vault key must be a string"),
    (f"- {PLANTED}\n", "the vault must hold a mapping"),
    ("", "the vault must hold a mapping"),
])
def test_a_vault_mapping_of_other_than_strings_is_refused_by_line_and_key(
        tmp_path: Path, plain: str, fragment: str) -> None:
    vault, password_file = broken_vault(tmp_path, plain)
    with pytest.raises(SecretError) as caught:
        read_vault(vault, password_file)
    assert fragment in str(caught.value) and PLANTED not in str(caught.value)
    assert caught.value.exit_code == 2


def test_strings_and_plain_decimal_numbers_are_read_as_written(tmp_path: Path) -> None:
    vault, password_file = broken_vault(
        tmp_path, "a: '0123'\nb: 1234\nc: \"yes\"\nd: |\n  two\n  lines\n12: twelve\n")
    assert read_vault(vault, password_file) == {
        "a": "0123", "b": "1234", "c": "yes", "d": "two\nlines\n", "12": "twelve"}
