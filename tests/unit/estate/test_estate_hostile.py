"""Estates written carelessly or with intent: files that are not files, values that would
reach a terminal, a unit file, a shell or an SSH option, numbers that are not numbers.
Each ends in named problems (file, key), never a crash, a hang or a file read it should
not read."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from orchestrator.errors import CommandError, EstateError
from orchestrator.estate import load_estate
from orchestrator.estate.loader import MAX_FILE_BYTES
from orchestrator.estate.values import calendar_problem, check_calendars
from tests.helpers import EstateCopy

SECRET_LINE = "root:$y$j9T$planted-secret-hash:19000:0:99999:7:::"


def test_a_link_out_of_the_estate_is_not_read(estate_copy: EstateCopy, tmp_path: Path) -> None:
    outside = tmp_path / "shadow"
    outside.write_text(SECRET_LINE + "\n")
    estate_copy.path("systems/x.yml").symlink_to(outside)
    found = estate_copy.assert_only_problems(
        ("systems/x.yml", "", "a link to a file outside the estate folder"))
    assert "planted-secret" not in str(found)


def test_a_folder_linked_out_of_the_estate_is_not_read(estate_copy: EstateCopy,
                                                        tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.yml").write_text("secret: " + SECRET_LINE + "\n")
    for path in estate_copy.path("systems").iterdir():
        (elsewhere / path.name).write_bytes(path.read_bytes())
    old = estate_copy.path("systems")
    for path in old.iterdir():
        path.unlink()
    old.rmdir()
    old.symlink_to(elsewhere)
    found = estate_copy.problems()
    assert found and all("outside the estate folder" in m for _, _, m in found)
    assert "planted-secret" not in str(found)


def test_a_link_inside_the_estate_to_a_regular_file_is_followed(
        estate_copy: EstateCopy) -> None:
    target = estate_copy.path("shared/qlvb.yml")
    target.parent.mkdir()
    estate_copy.path("systems/qlvb.yml").rename(target)
    estate_copy.path("systems/qlvb.yml").symlink_to(Path("../shared/qlvb.yml"))
    assert "qlvb" in estate_copy.load().systems


def test_a_device_is_refused_without_reading_it(estate_copy: EstateCopy) -> None:
    estate_copy.path("systems/zero.yml").symlink_to("/dev/zero")
    estate_copy.assert_only_problems(
        ("systems/zero.yml", "", "a link to a file outside the estate folder"))


def test_a_named_pipe_is_refused_at_once(estate_copy: EstateCopy) -> None:
    os.mkfifo(estate_copy.path("systems/pipe.yml"))
    started = time.monotonic()
    estate_copy.assert_only_problems(("systems/pipe.yml", "", "not a regular file (a named pipe)"))
    assert time.monotonic() - started < 10  # no writer ever comes: it must not wait for one


def test_a_socket_is_refused(estate_copy: EstateCopy) -> None:
    path = estate_copy.path("systems/sock.yml")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        estate_copy.assert_only_problems(("systems/sock.yml", "", "cannot read the file"))


def test_a_huge_file_is_refused_unread(estate_copy: EstateCopy) -> None:
    estate_copy.path("systems/big.yml").write_bytes(b"# " + b"x" * MAX_FILE_BYTES + b"\n")
    estate_copy.assert_only_problems(("systems/big.yml", "", "larger than 1024 KiB"))


def test_an_alias_bomb_is_refused_quickly(estate_copy: EstateCopy) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 12)]
    estate_copy.path("systems/lol.yml").write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    estate_copy.assert_only_problems(("systems/lol.yml", "", "once its aliases (*name) are "
                                                             "expanded"))
    assert time.monotonic() - started < 10


def test_a_file_nested_too_deep_is_refused(estate_copy: EstateCopy) -> None:
    estate_copy.path("systems/deep.yml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    found = estate_copy.problems()
    assert [(f, k) for f, k, _ in found] == [("systems/deep.yml", "")]


def test_escape_sequences_never_reach_the_terminal(estate_copy: EstateCopy) -> None:
    estate_copy.path("systems/qlvb.yml").write_text(
        estate_copy.path("systems/qlvb.yml").read_text()
        + '"\\e[2J\\e[Hestate danang is valid": 1\n')
    found = estate_copy.problems()
    assert found and not any("\x1b" in part for problem in found for part in problem)
    assert any("\\x1b[2J" in problem[2] for problem in found)


@pytest.mark.parametrize(("value", "key"), [
    ("QLVB\nExecStartPre=/bin/sh -c id", "name"),
    ("QLVB\x1b]0;owned\x07", "name"),
    ("QLVB\r", "name"),
])
def test_a_value_with_a_control_character_is_named(estate_copy: EstateCopy, value: str,
                                                    key: str) -> None:
    estate_copy.edit("systems/qlvb.yml", lambda d: d.update({key: value}))
    found = estate_copy.assert_only_problems(("systems/qlvb.yml", key, "control character"))
    assert not any(ch in found[0][2] for ch in "\n\r\x1b\x07")


@pytest.mark.parametrize(("path", "message"), [
    ("/srv/../etc", "holds '.' or '..'"),
    ("/srv/./qlvb", "holds '.' or '..'"),
    ("srv/qlvb", "not an absolute path"),
    ("/srv//qlvb", "not written plainly: write /srv/qlvb"),
    ("/srv/qlvb/", "not written plainly"),
])
def test_backup_paths_are_absolute_and_plain(estate_copy: EstateCopy, path: str,
                                             message: str) -> None:
    estate_copy.edit("systems/qlvb.yml", lambda d: d["backup"].update(paths=[path]))
    estate_copy.assert_only_problems(("systems/qlvb.yml", "backup.paths[0]", message))


def test_a_repository_storage_path_is_plain(estate_copy: EstateCopy) -> None:
    estate_copy.edit("estate.yml",
                     lambda d: d["repository_hosts"][0].update(storage_path="/srv/../root"))
    estate_copy.assert_only_problems(
        ("estate.yml", "repository_hosts[0].storage_path", "holds '.' or '..'"))


@pytest.mark.parametrize("schedule", ["every night", "25:00", "*-*-* 02:61", "Mon..Fro 10:00"])
def test_a_schedule_systemd_would_refuse_is_named(estate_copy: EstateCopy,
                                                  schedule: str) -> None:
    estate_copy.edit("systems/qlvb.yml", lambda d: d["backup"].update(schedule=schedule))
    found = estate_copy.assert_only_problems(
        ("systems/qlvb.yml", "backup.schedule", "not a systemd calendar event"))
    assert "hopnhat's reading of the grammar" in found[0][2]


def test_the_vault_schedule_is_checked_too(estate_copy: EstateCopy) -> None:
    estate_copy.edit("estate.yml", lambda d: d["vault"].update(schedule="25:00"))
    estate_copy.assert_only_problems(("estate.yml", "vault.schedule", "hour 25"))


@pytest.mark.parametrize("schedule", [
    "*-*-* 02:00:00", "Mon..Fri 22:00", "hourly", "daily", "weekly", "*-*-* *:00/15:00",
    "Sun *-*-* 05:30:00", "Mon,Wed 10:00 Asia/Ho_Chi_Minh", "*-02~01", "02:00 UTC",
    "2199-12-01 08:00", "*:0/15", "Sat"])
def test_schedules_systemd_reads_are_read_alike(schedule: str) -> None:
    assert calendar_problem(schedule) is None
    from orchestrator.adapters.systemd import calendar_problems

    assert calendar_problems([schedule]) == {}  # systemd-analyze agrees


def test_systemd_judges_where_it_is_installed(estate_copy: EstateCopy) -> None:
    from orchestrator.adapters.systemd import calendar_problems

    estate_copy.edit("systems/qlvb.yml", lambda d: d["backup"].update(schedule="every night"))
    with pytest.raises(EstateError) as refused:
        load_estate(estate_copy.root, calendar=calendar_problems)
    assert refused.value.problems == [
        ("systems/qlvb.yml", "backup.schedule",
         "not a systemd calendar event: Invalid argument [checked by systemd-analyze "
         "calendar]")]


def test_the_fallback_names_itself() -> None:
    found = check_calendars(["every night", "daily"])
    assert list(found) == ["every night"]
    assert "systemd-analyze not found" in found["every night"]


def test_where_systemd_analyze_is_missing_hopnhats_reading_judges(
        estate_copy: EstateCopy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.adapters.systemd import calendar_problems

    monkeypatch.setenv("PATH", str(tmp_path))  # no systemd-analyze on it
    with pytest.raises(CommandError, match="systemd-analyze: program not found"):
        calendar_problems(["daily"])
    estate_copy.edit("systems/qlvb.yml", lambda d: d["backup"].update(schedule="every night"))
    with pytest.raises(EstateError) as refused:
        load_estate(estate_copy.root, calendar=calendar_problems)
    assert refused.value.problems == [
        ("systems/qlvb.yml", "backup.schedule", check_calendars(["every night"])["every night"])]


@pytest.mark.parametrize(("edit", "key", "message"), [
    (lambda d: d["tiers"][1].update(rpo="0s"), "tiers[1].rpo", "longer than 0s"),
    (lambda d: d["tiers"][1].update(rto=0), "tiers[1].rto", "longer than 0s"),
    (lambda d: d["provisioning"].update(guest_ip_timeout="0s"), "provisioning.guest_ip_timeout",
     "longer than 0s"),
    (lambda d: d["repository_hosts"][0].update(capacity_gb=float("inf")),
     "repository_hosts[0].capacity_gb", "finite number"),
    (lambda d: d["repository_hosts"][0].update(capacity_gb=float("nan")),
     "repository_hosts[0].capacity_gb", "finite number"),
    (lambda d: d["repository_hosts"][0].update(capacity_gb=True),
     "repository_hosts[0].capacity_gb", "valid number"),
    (lambda d: d["provisioning"].update(concurrency=True), "provisioning.concurrency",
     "valid integer"),
    (lambda d: d["tiers"].update({True: d["tiers"].pop(1)}), "tiers[1]",
     "valid integer"),
])
def test_strict_numbers_and_durations_in_estate_yml(estate_copy: EstateCopy, edit: object,
                                                    key: str, message: str) -> None:
    estate_copy.edit("estate.yml", edit)  # type: ignore[arg-type]
    found = estate_copy.problems()
    assert any(k == key and message in m for f, k, m in found if f == "estate.yml"), found


def test_cpu_yes_is_not_one_vcpu(estate_copy: EstateCopy) -> None:
    estate_copy.replace("systems/dvc.yml", "cpu: 4", "cpu: yes")
    estate_copy.assert_only_problems(("systems/dvc.yml", "vms[0].cpu", "valid integer"))


def test_a_word_is_not_a_boolean(estate_copy: EstateCopy) -> None:
    estate_copy.edit("systems/dvc.yml", lambda d: d["vms"][0].update(data="maybe"))
    estate_copy.assert_only_problems(("systems/dvc.yml", "vms[0].data", "valid boolean"))


def test_overlapping_networks_of_a_site_are_named(estate_copy: EstateCopy) -> None:
    estate_copy.edit("sites/danang.yml",
                     lambda d: d["networks"]["db"].update(subnet="127.10.0.0/16",
                                                          gateway="127.10.0.1",
                                                          pool="127.10.3.10-127.10.3.250"))
    found = estate_copy.problems()
    assert any(f == "sites/danang.yml" and k == "networks.db.subnet" and "overlaps" in m
               for f, k, m in found), found


def test_vcenter_is_reached_over_https_only(estate_copy: EstateCopy) -> None:
    estate_copy.edit("sites/danang.yml",
                     lambda d: d["vcenter"].update(url="http://127.0.0.1:8989/sdk"))
    estate_copy.assert_only_problems(("sites/danang.yml", "vcenter.url", "https://"))


@pytest.mark.parametrize("path", ["/srv/%H", "/srv/a b", "/srv/a,b", "/srv/a:b", "/srv/$x"])
def test_a_repository_folder_holds_plain_characters_only(estate_copy: EstateCopy,
                                                         path: str) -> None:
    """It lands in a unit file (ReadWritePaths=, where %H expands), an environment file
    and sshd's config on the host."""
    estate_copy.edit("estate.yml",
                     lambda d: d["repository_hosts"][0].update(storage_path=path))
    estate_copy.assert_only_problems(
        ("estate.yml", "repository_hosts[0].storage_path", "should match pattern"))


@pytest.mark.parametrize("schedule", [
    "*-*-* */2:00:00", "*:*/15", "*-*-*/2", "Fri..Mon", "Sun..Mon", "every night", "25:00",
    "Mon..Fri 22:00", "*-*-* 02:00:00", "hourly", "*:0/15", "*-02~01", "Sat,Sun 10:00",
    "Mon *-*-* 05:30", "*-*-* 06:30:00 UTC", "12:00", "*-1-1", "Mon..Wed,Fri 01:02:03"])
def test_hopnhats_reading_agrees_with_systemds(schedule: str) -> None:
    """Where systemd-analyze is missing, hopnhat's own reading stands in: on these (cron
    habits included) both say the same."""
    import subprocess

    systemd = subprocess.run(["systemd-analyze", "calendar", "--", schedule],
                             capture_output=True, check=False).returncode == 0
    assert (calendar_problem(schedule) is None) == systemd


def test_a_schedule_that_never_elapses_is_named_by_systemd(estate_copy: EstateCopy) -> None:
    from orchestrator.adapters.systemd import calendar_problems

    estate_copy.edit("systems/qlvb.yml", lambda d: d["backup"].update(schedule="2023-01-01"))
    with pytest.raises(EstateError) as refused:
        load_estate(estate_copy.root, calendar=calendar_problems)
    [(rel, key, message)] = refused.value.problems
    assert (rel, key) == ("systems/qlvb.yml", "backup.schedule") and "never elapses" in message
