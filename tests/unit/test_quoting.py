"""One quoting function per target, each tried with hostile values: what comes out must
mean the value itself to that target (a shell, ssh, systemd, Ansible, a terminal)."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.quoting import (
    ansible_value,
    prometheus_label,
    shell,
    shell_join,
    ssh_option,
    terminal,
    unit_exec_word,
    unit_path,
    unit_text,
    unit_word,
)

HOSTILE = [
    "plain",
    "two words",
    "$(touch /tmp/pwned)",
    "`id`",
    "a'b\"c",
    "x; rm -rf /",
    "-o ProxyCommand=touch /tmp/pwned",
    "%h %%n",
    "back\\slash",
    "{{ lookup('pipe', 'id') }}",
    "tổng hợp",
    "",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_shell_word_is_the_value_itself_to_sh(value: str) -> None:
    done = subprocess.run(["sh", "-c", f"printf %s {shell(value)}"], capture_output=True,
                          text=True, check=True)
    assert done.stdout == value


def test_a_shell_line_keeps_every_word_whole() -> None:
    done = subprocess.run(["sh", "-c", f"printf '%s\\n' {shell_join(HOSTILE[:-1])}"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == HOSTILE[:-1]


@pytest.mark.parametrize("value", [v for v in HOSTILE if '"' not in v])
def test_an_ssh_option_is_one_value_with_tokens_escaped(value: str) -> None:
    option = ssh_option("UserKnownHostsFile", value)
    assert option.startswith('UserKnownHostsFile="') and option.endswith('"')
    inner = option[len('UserKnownHostsFile="'):-1]
    assert inner.replace("%%", "%") == value
    assert "%" not in inner.replace("%%", "")  # every % doubled: no token expands
    # through Ansible's shlex split it stays one argument
    assert shlex.split(f"-o {shell(option)}") == ["-o", option]


@pytest.mark.parametrize("value", ['a"b', "a\nb", "a\x1b[2Jb", "a\x00b"])
def test_an_ssh_option_refuses_what_it_cannot_hold(value: str) -> None:
    with pytest.raises(ValueError, match="UserKnownHostsFile"):
        ssh_option("UserKnownHostsFile", value)


def test_an_ssh_option_name_is_a_word() -> None:
    with pytest.raises(ValueError):
        ssh_option("User KnownHostsFile", "x")


@pytest.mark.parametrize("value", ["a\nExecStartPre=/bin/sh -c id", "a\rb", "a\x1b[2J"])
def test_a_unit_word_or_path_refuses_a_line_break_or_control(value: str) -> None:
    for quote in (unit_word, unit_exec_word, unit_path):
        with pytest.raises(ValueError, match="control character or a line break"):
            quote(value)


def test_unit_words_escape_specifiers_quotes_and_dollars() -> None:
    assert unit_word("/srv/state 1/%h") == '"/srv/state 1/%%h"'
    assert unit_word('say "hi"; x') == '"say \\"hi\\"; x"'
    assert unit_word("plain") == "plain"
    assert unit_exec_word("$HOME") == "$$HOME"
    assert unit_path("/a/%n") == "/a/%%n"


def test_unit_text_stays_on_its_line() -> None:
    text = unit_text("QLVB\nExecStartPre=/bin/id %h")
    assert "\n" not in text and "\\x0a" in text and "%%h" in text


def test_unit_words_systemd_reads_back(tmp_path: Path) -> None:
    """systemd-analyze verify takes a service whose ExecStart words came through
    unit_exec_word, hostile ones included, and reads no extra directive."""
    hostile = ["/bin/true", "two words", "%h", "$HOME", "a;b", 'q"uote', "back\\slash"]
    unit = tmp_path / "hopnhat-quoting-test.service"
    unit.write_text("[Unit]\nDescription=" + unit_text("x\nExecStartPre=/bin/false") +
                    "\n[Service]\nType=oneshot\nExecStart=" +
                    " ".join(unit_exec_word(w) for w in hostile) + "\n")
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "ExecStartPre" not in "".join(
        line for line in unit.read_text().splitlines() if not line.startswith("Description"))


def test_ansible_values_are_marked_unsafe_recursively() -> None:
    value = {"name": "{{ lookup('pipe', 'id') }}", "n": 3, "on": True, "paths": ["/a", Path("/b")],
             "nested": {"x": None}}
    assert ansible_value(value) == {
        "name": {"__ansible_unsafe": "{{ lookup('pipe', 'id') }}"}, "n": 3, "on": True,
        "paths": [{"__ansible_unsafe": "/a"}, {"__ansible_unsafe": "/b"}],
        "nested": {"x": None}}


def test_ansible_never_evaluates_an_estate_value(tmp_path: Path) -> None:
    """A system name written as a Jinja lookup reaches a real ansible-playbook through an
    inventory and extra vars quoted by ansible_value: printed as text, never run."""
    import sys

    marker = tmp_path / "pwned"
    payload = f"{{{{ lookup('pipe', 'touch {marker}') }}}}"
    inventory = {"all": {"hosts": {"localhost": {"ansible_connection": "local",
                                                 "hopnhat_system_name": payload}}}}
    (tmp_path / "hosts.json").write_text(json.dumps(ansible_value(inventory)))
    (tmp_path / "extra.json").write_text(json.dumps(ansible_value({"hopnhat_extra": payload})))
    (tmp_path / "play.yml").write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.debug:\n"
        "        msg: \"[{{ hopnhat_system_name }}] [{{ hopnhat_extra }}]\"\n")
    playbook = Path(sys.executable).with_name("ansible-playbook")
    done = subprocess.run([str(playbook), "-i", str(tmp_path / "hosts.json"),
                           "-e", f"@{tmp_path / 'extra.json'}", str(tmp_path / "play.yml")],
                          capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1",
                               "HOME": str(tmp_path), "ANSIBLE_LOCAL_TEMP": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert not marker.exists()
    assert f"touch {marker}" in done.stdout


@pytest.mark.parametrize(("text", "shown"), [
    ("\x1b[2Jestate is valid", "\\x1b[2Jestate is valid"),
    ("a\nb\tc", "a\\x0ab\\x09c"),
    ("\x9b31m", "\\x9b31m"),
    ("\u202egnp.exe", "\\u202egnp.exe"),
    ("tổng hợp", "tổng hợp"),
])
def test_terminal_text_shows_controls_visibly(text: str, shown: str) -> None:
    assert terminal(text) == shown


def test_terminal_text_is_cut_and_may_keep_its_lines() -> None:
    assert terminal("x" * 500, 10) == "x" * 10 + "…"
    assert terminal("a\nb\x1b", lines=True) == "a\nb\\x1b"


@pytest.mark.parametrize("value", [*HOSTILE, 'line\nbreak "quoted" \\n', "\\", '"'])
def test_a_prometheus_label_reads_back_as_the_value_itself(value: str) -> None:
    text = f'hopnhat_x{{system="{prometheus_label(value)}"}} 1\n'
    (family,) = text_string_to_metric_families(text)
    assert family.samples[0].labels == {"system": value}
