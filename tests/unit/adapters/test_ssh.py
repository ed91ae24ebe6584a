"""OpenSSH's command line for a streamed remote command, and how its failures read; one
host's shared paramiko connection and how it is cut; streamed jobs ended together."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from orchestrator.adapters import ssh
from orchestrator.adapters.ssh import (
    Remote,
    RemoteResult,
    StreamedJobs,
    Target,
    local_kex,
    openssh_argv,
    preferred_kex,
    ssh_failure,
)
from orchestrator.errors import SSHError
from orchestrator.process import run

TARGET = Target(host="video-mcu-01", address="127.10.1.20", port=2222, user="root",
                key_file=Path("/state/keys/id_ed25519"),
                known_hosts=Path("/state/known_hosts"))


def options(argv: tuple[str, ...]) -> dict[str, str]:
    pairs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-o"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_the_host_key_is_checked_strictly_against_hopnhats_known_hosts_only() -> None:
    argv = openssh_argv(TARGET, "true")
    seen = options(argv)
    assert argv[:4] == ("ssh", "-F", "/dev/null", "-T")  # no user or system ssh_config
    assert seen["StrictHostKeyChecking"] == "yes" and seen["UpdateHostKeys"] == "no"
    assert seen["UserKnownHostsFile"] == '"/state/known_hosts"'
    assert seen["GlobalKnownHostsFile"] == "/dev/null"


def test_only_hopnhats_key_no_agent_no_prompt() -> None:
    seen = options(openssh_argv(TARGET, "true"))
    assert (seen["IdentityFile"], seen["IdentitiesOnly"], seen["IdentityAgent"],
            seen["BatchMode"]) == ('"/state/keys/id_ed25519"', "yes", "none", "yes")


def test_the_command_comes_last_after_the_address_port_and_user() -> None:
    argv = openssh_argv(TARGET, "env LC_ALL=C cat -- /x", connect_timeout=7.4)
    assert argv[-7:] == ("-p", "2222", "-l", "root", "--", "127.10.1.20",
                         "env LC_ALL=C cat -- /x")
    assert options(argv)["ConnectTimeout"] == "7"


def test_the_key_exchange_prefers_paramikos_choices_that_this_ssh_offers() -> None:
    openssh_9_2 = ["diffie-hellman-group14-sha256", "curve25519-sha256",
                   "curve25519-sha256@libssh.org", "sntrup761x25519-sha512@openssh.com"]
    assert preferred_kex(openssh_9_2) == ("curve25519-sha256", "curve25519-sha256@libssh.org")
    assert preferred_kex(["mlkem768x25519-sha256", *openssh_9_2])[0] == "mlkem768x25519-sha256"
    # "^": put first, ssh's own list after them (a server without them still connects)
    argv = openssh_argv(TARGET, "true", kex_first=("curve25519-sha256",))
    assert options(argv)["KexAlgorithms"] == "^curve25519-sha256"
    assert "KexAlgorithms" not in options(openssh_argv(TARGET, "true"))


def test_the_local_ssh_accepts_the_key_exchanges_asked_for() -> None:
    first = preferred_kex(local_kex())
    assert first  # OpenSSH >= 6.5 has curve25519
    argv = openssh_argv(TARGET, "true", kex_first=first)
    assert argv[-3:] == ("--", "127.10.1.20", "true")
    done = run(["ssh", "-G", *argv[1:-3], "127.10.1.20"], timeout=10)  # -G: print, connect not
    assert done.ok, done.stderr
    said = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    assert said["kexalgorithms"].split(",")[:len(first)] == list(first)


def test_a_dead_connection_is_dropped_after_a_minute_of_silence() -> None:
    seen = options(openssh_argv(TARGET, "true"))
    assert int(seen["ServerAliveInterval"]) * int(seen["ServerAliveCountMax"]) == 60


def test_paths_are_quoted_for_ssh_options() -> None:
    """ssh itself (``ssh -G``: the configuration it would use) reads each path whole: a
    blank does not split it, a % is not a token."""
    import subprocess

    odd = Target("h", "127.0.0.1", 22, "root", Path("/my state/id"),
                 Path("/a%d b/known_hosts"))
    argv = openssh_argv(odd, "true")
    seen = options(argv)
    assert seen["IdentityFile"] == '"/my state/id"'
    assert seen["UserKnownHostsFile"] == '"/a%%d b/known_hosts"'
    at = argv.index("--")
    done = subprocess.run(["ssh", "-G", *argv[1:at], argv[at + 1]], capture_output=True,
                          text=True, check=True)
    config = done.stdout.splitlines()
    assert "userknownhostsfile /a%d b/known_hosts" in config
    assert "identityfile /my state/id" in config


@pytest.mark.parametrize(("stderr", "said"), [
    ("ssh: connect to host 127.10.2.99 port 22: Connection refused\n",
     "cannot connect (Connection refused)"),
    ("ssh: connect to host 10.0.0.1 port 22: Connection timed out\r\n",
     "cannot connect (Connection timed out)"),
    ("No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict "
     "checking.\nHost key verification failed.\n", "Host key verification failed."),
    ("root@127.0.0.1: Permission denied (publickey).\n",
     "root@127.0.0.1: Permission denied (publickey)."),
    ("", "ssh failed (exit 255) and said nothing"),
])
def test_ssh_failures_read_in_one_line(stderr: str, said: str) -> None:
    assert ssh_failure(stderr) == said


class FakeClient:
    closed = False

    def close(self) -> None:
        self.closed = True


def test_commands_on_one_host_share_a_connection_and_close_cuts_it_for_good(
        monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[FakeClient] = []

    def connect(target: Target, alive: tuple[int, int]) -> FakeClient:
        made.append(FakeClient())
        return made[-1]

    def execute(client: FakeClient, target: Target, command: str,
                **_: object) -> RemoteResult:
        return RemoteResult(target.host, command, 0, str(made.index(client)), "")

    monkeypatch.setattr(ssh, "connect", connect)
    monkeypatch.setattr(ssh, "execute", execute)
    remote = Remote(TARGET)
    assert [remote.run("true").stdout, remote.run("ls").stdout] == ["0", "0"]
    remote.close()
    assert len(made) == 1 and made[0].closed
    with pytest.raises(SSHError, match="video-mcu-01: the drill was stopped"):
        remote.run("true")
    assert len(made) == 1  # nothing connects after close


def test_close_all_ends_a_running_streamed_job_and_any_started_after(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # a job that runs until it is killed, in place of ssh's command line
    monkeypatch.setattr(ssh, "openssh_argv", lambda target, command, **_: (
        sys.executable, "-c", "import time\nprint('up', flush=True)\ntime.sleep(60)"))
    jobs = StreamedJobs(silence_timeout=600)
    ended: list[RemoteResult] = []
    up = threading.Event()
    running = threading.Thread(target=lambda: ended.append(
        jobs.run(TARGET, "backup", on_line=lambda _: up.set())))
    running.start()
    assert up.wait(timeout=30)
    jobs.close_all()
    running.join(timeout=30)
    assert [(r.host, r.returncode < 0) for r in ended] == [("video-mcu-01", True)]
    assert jobs.run(TARGET, "backup").returncode < 0  # started after close_all: killed
