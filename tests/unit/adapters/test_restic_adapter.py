"""The restic adapter's pure parts: argv builders (exact tuples), environment, sftp.command
quoting, version features, error classification from restic's real wording, and parsers."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.adapters.restic import (
    AccessDenied,
    ConnectionLost,
    Features,
    NoRepository,
    NoSpace,
    Repository,
    RepositoryDamaged,
    RepositoryLocked,
    Restic,
    ResticCommandError,
    WrongPassword,
    retention_flags,
    ssh_command,
)
from orchestrator.adapters.restic_argv import (
    make_backup_argv,
    make_cat_lock_argv,
    make_check_argv,
    make_copy_argv,
    make_dump_argv,
    make_environment,
    make_forget_argv,
    make_init_argv,
    make_list_locks_argv,
    make_ls_argv,
    make_restore_argv,
    make_snapshots_argv,
    make_stats_argv,
    make_tag_argv,
    make_unlock_argv,
    make_version_argv,
    parse_version,
    redact,
    sftp_option,
    with_retry_lock,
)
from orchestrator.adapters.restic_errors import (
    Retry,
    classify,
    futile_sftp_retry,
    key_line,
    parse_go_duration,
    parse_lock_holder,
    parse_retry,
)
from orchestrator.adapters.restic_results import (
    PRUNE_NOTE,
    CheckSummary,
    Listing,
    LockInfo,
    ProcessState,
    check_summary,
    lock_verdict,
    parse_backup_output,
    parse_check,
    parse_check_json,
    parse_forget,
    parse_lock,
    parse_ls_line,
    parse_restore,
    parse_snapshots,
    parse_stats,
    parse_time,
)
from orchestrator.adapters.restic_stream import process_state

PW = Path("/etc/hopnhat/qlvb.pw")
LOCAL = Repository("/srv/restic/qlvb", PW, name="qlvb")
CACHED = Repository("/srv/restic/qlvb", PW, cache_dir=Path("/var/cache/restic"), name="qlvb")
SSH = ("ssh", "-i", "/k/id", "restic-qlvb@127.20.2.10", "-s", "sftp")
SFTP = Repository("sftp:restic-qlvb@127.20.2.10:/repo", PW, sftp_command=SSH, name="qlvb")
V14 = Features((0, 14, 0))
V13 = Features((0, 13, 1))
V17 = Features((0, 17, 3))
V18 = Features((0, 18, 1))
BASE = ("restic", "--repo", "/srv/restic/qlvb", "--no-cache")
SFTP_OPT = "sftp.command=ssh -i /k/id restic-qlvb@127.20.2.10 -s sftp"


# --- argv builders --------------------------------------------------------------------------


def test_backup_argv_is_exact() -> None:
    argv = make_backup_argv(LOCAL, ["/srv/data", Path("/etc")], tags=["system=qlvb", "tier=1"],
                            exclude=["*.tmp"], host="qlvb-db-1")
    assert argv == (*BASE, "backup", "--json", "--host", "qlvb-db-1", "--tag", "system=qlvb",
                    "--tag", "tier=1", "--exclude", "*.tmp", "--", "/srv/data", "/etc")


def test_backup_argv_without_json_and_with_a_cache() -> None:
    assert make_backup_argv(CACHED, ["/srv"], json=False) == (
        "restic", "--repo", "/srv/restic/qlvb", "backup", "--", "/srv")


def test_backup_argv_refuses_no_path() -> None:
    with pytest.raises(ValueError, match="no path"):
        make_backup_argv(LOCAL, [])


def test_a_path_starting_with_a_dash_stays_a_path() -> None:
    assert make_backup_argv(LOCAL, ["--weird"])[-2:] == ("--", "--weird")


def test_sftp_repository_carries_its_ssh_command_as_one_option() -> None:
    assert make_snapshots_argv(SFTP) == (
        "restic", "--repo", "sftp:restic-qlvb@127.20.2.10:/repo", "-o", SFTP_OPT,
        "--no-cache", "snapshots", "--json")


def test_snapshots_argv_with_filters() -> None:
    assert make_snapshots_argv(LOCAL, host="h1", tags=["a,b", "c"], paths=["/srv"], latest=1,
                               snapshot_ids=["abcd1234"]) == (
        *BASE, "snapshots", "--json", "--host", "h1", "--tag", "a,b", "--tag", "c",
        "--path", "/srv", "--latest", "1", "abcd1234")


def test_forget_argv_puts_the_policy_in_restics_order_and_prunes() -> None:
    argv = make_forget_argv(LOCAL, {"within": "30d", "daily": 7, "keep_weekly": 4, "last": 3})
    assert argv == (*BASE, "forget", "--json", "--keep-last", "3", "--keep-daily", "7",
                    "--keep-weekly", "4", "--keep-within", "30d", "--keep-tag", "final",
                    "--keep-tag", "archived", "--prune")


def test_forget_argv_without_prune_with_filters() -> None:
    argv = make_forget_argv(LOCAL, {"keep-monthly": 6}, prune=False, host="h", tags=["system=x"],
                            group_by="host,tags", dry_run=True)
    assert argv == (*BASE, "forget", "--json", "--keep-monthly", "6", "--keep-tag", "final",
                    "--keep-tag", "archived", "--host", "h", "--tag", "system=x",
                    "--group-by", "host,tags", "--dry-run")


def test_tag_and_dump_argv() -> None:
    assert make_tag_argv(LOCAL, ["abc", "def"], ["final", "archived"]) == (
        *BASE, "tag", "--add", "final", "--add", "archived", "--", "abc", "def")
    assert make_dump_argv(LOCAL, "abc", "/srv/-x") == (*BASE, "dump", "--", "abc", "/srv/-x")
    with pytest.raises(ValueError, match="at least one snapshot"):
        make_tag_argv(LOCAL, [], ["final"])  # restic would tag every snapshot
    with pytest.raises(ValueError, match="absolute"):
        make_dump_argv(LOCAL, "abc", "srv/x")


@pytest.mark.parametrize(("policy", "message"), [
    ({}, "empty policy"),
    ({"fortnightly": 2}, "unknown key"),
    ({"daily": 0}, ">= 1"),
    ({"daily": "7"}, ">= 1"),
    ({"daily": True}, ">= 1"),
    ({"within": "30 days"}, "duration"),
    ({"within": ""}, "duration"),
])
def test_retention_refuses_a_bad_policy(policy: dict[str, int | str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        retention_flags(policy)


def test_retention_accepts_every_restic_keep_option() -> None:
    flags = retention_flags({"last": 1, "hourly": 2, "daily": 3, "weekly": 4, "monthly": 5,
                             "yearly": 6, "within": "1y", "within_daily": "7d",
                             "within-hourly": "2d", "within_weekly": "1m",
                             "within_monthly": "1y", "within_yearly": "5y", "tag": "keep"})
    assert flags == ("--keep-last", "1", "--keep-hourly", "2", "--keep-daily", "3",
                     "--keep-weekly", "4", "--keep-monthly", "5", "--keep-yearly", "6",
                     "--keep-within", "1y", "--keep-within-hourly", "2d",
                     "--keep-within-daily", "7d", "--keep-within-weekly", "1m",
                     "--keep-within-monthly", "1y", "--keep-within-yearly", "5y",
                     "--keep-tag", "keep")


@pytest.mark.parametrize(("subset", "tail"), [
    (None, ()),
    ("all", ("--read-data",)),
    ("3/7", ("--read-data-subset", "3/7")),
    ("10%", ("--read-data-subset", "10%")),
    ("2.5%", ("--read-data-subset", "2.5%")),
    ("500M", ("--read-data-subset", "500M")),
])
def test_check_argv(subset: str | None, tail: tuple[str, ...]) -> None:
    assert make_check_argv(LOCAL, subset) == (*BASE, "check", *tail)


def test_check_argv_with_json_for_restic_0_18() -> None:
    assert make_check_argv(LOCAL, "2/7", json=True) == (
        *BASE, "check", "--json", "--read-data-subset", "2/7")
    assert make_check_argv(LOCAL, json=True) == (*BASE, "check", "--json")


@pytest.mark.parametrize("subset", ["8/7", "0/7", "x%", "1/0", "ten", "", "1/2; rm -rf /"])
def test_check_argv_refuses_a_bad_subset(subset: str) -> None:
    with pytest.raises(ValueError, match="subset"):
        make_check_argv(LOCAL, subset)


def test_restore_argv_verifies_by_default() -> None:
    assert make_restore_argv(LOCAL, "latest", Path("/restore"), include=["/srv/db"]) == (
        *BASE, "restore", "latest", "--target", "/restore", "--include", "/srv/db", "--verify")
    assert make_restore_argv(LOCAL, "abcd1234", "/r", verify=False, host="h") == (
        *BASE, "restore", "abcd1234", "--target", "/r", "--host", "h")


def test_ls_stats_init_unlock_and_lock_argv() -> None:
    assert make_ls_argv(LOCAL, "latest", ["/srv"], host="h") == (
        *BASE, "ls", "--json", "--host", "h", "latest", "/srv")
    assert make_stats_argv(LOCAL, ["a1b2c3d4"], mode="raw-data") == (
        *BASE, "stats", "--json", "--mode", "raw-data", "a1b2c3d4")
    assert make_init_argv(LOCAL) == (*BASE, "init")
    assert make_unlock_argv(LOCAL) == (*BASE, "unlock")
    assert make_list_locks_argv(LOCAL) == (*BASE, "list", "locks", "--no-lock")
    assert make_cat_lock_argv(LOCAL, "dd37acf2") == (*BASE, "cat", "lock", "dd37acf2",
                                                     "--no-lock")
    assert make_version_argv() == ("restic", "version")


def test_unlock_never_removes_live_locks() -> None:
    assert "--remove-all" not in make_unlock_argv(LOCAL)


def test_bad_stats_mode_and_lock_id_are_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        make_stats_argv(LOCAL, mode="everything")
    with pytest.raises(ValueError, match="lock ID"):
        make_cat_lock_argv(LOCAL, "../config")


def test_init_copying_chunker_parameters_names_the_source() -> None:
    source = Repository("/srv/restic/main", Path("/pw/main"))
    assert make_init_argv(LOCAL, chunker_from=source, features=V14) == (
        *BASE, "init", "--copy-chunker-params", "--from-repo", "/srv/restic/main")
    assert make_init_argv(LOCAL, chunker_from=source, features=V13)[-2:] == (
        "--repo2", "/srv/restic/main")


def test_copy_from_0_14_runs_against_the_destination_with_from_repo() -> None:
    source = Repository("/srv/restic/main", Path("/pw/main"), name="main")
    assert make_copy_argv(source, LOCAL, ["abcd1234"], features=V14) == (
        *BASE, "copy", "--from-repo", "/srv/restic/main", "abcd1234")


def test_copy_before_0_14_ran_against_the_source_with_repo2() -> None:
    source = Repository("/srv/restic/main", Path("/pw/main"), name="main")
    assert make_copy_argv(source, LOCAL, features=V13) == (
        "restic", "--repo", "/srv/restic/main", "--no-cache", "copy", "--repo2",
        "/srv/restic/qlvb")


def test_copy_between_two_sftp_hosts_needing_different_ssh_is_refused() -> None:
    other = Repository("sftp:restic-qlvb@127.20.3.10:/repo", PW,
                       sftp_command=("ssh", "restic-qlvb@127.20.3.10", "-s", "sftp"))
    with pytest.raises(ValueError, match=r"one sftp\.command"):
        make_copy_argv(SFTP, other)


def test_copy_uses_the_ssh_command_of_whichever_repository_has_one() -> None:
    assert make_copy_argv(SFTP, LOCAL, features=V14)[3:5] == ("-o", SFTP_OPT)


def test_retry_lock_goes_right_after_the_program() -> None:
    assert with_retry_lock(("/usr/bin/restic", "--repo", "x", "check"), 90.4) == (
        "/usr/bin/restic", "--retry-lock", "90s", "--repo", "x", "check")
    assert with_retry_lock(("restic", "check"), 0.2)[1:3] == ("--retry-lock", "1s")


# --- sftp.command ---------------------------------------------------------------------------


def restic_split(option: str) -> list[str]:
    """restic's way back: pflag reads -o as CSV, then internal/backend/sftp/split.go splits
    the command (quotes, no escapes, a quote character always ends a word)."""
    [value] = next(csv.reader([option]))
    command = value.removeprefix("sftp.command=")
    args: list[str] = []
    quote = ""
    last = ""
    start = -1
    for i, c in enumerate(command):
        split = False
        if last != "\\" and ((quote and c == quote) or (not quote and c in "\"'")):
            quote = "" if quote else c
            split = True
        else:
            last = c
            split = not quote and (c == "\\" or c.isspace())
        if split:
            if start >= 0:
                args.append(command[start:i])
                start = -1
        elif start == -1:
            start = i
    if start >= 0:
        args.append(command[start:])
    return args


def test_ssh_command_pins_host_keys_and_keeps_the_link_alive() -> None:
    argv = ssh_command("restic-qlvb@127.20.2.10", Path("/k/id"), Path("/k/known_hosts"),
                       port=2222)
    assert argv == (
        "ssh", "-o", 'IdentityFile="/k/id"', "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=yes", "-o", 'UserKnownHostsFile="/k/known_hosts"',
        "-o", "BatchMode=yes",
        "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
        "-o", "ConnectTimeout=30", "-p", "2222", "restic-qlvb@127.20.2.10", "-s", "sftp")


@pytest.mark.parametrize("argv", [
    SSH,
    ("ssh", "-i", "/keys/with space/id", "u@h", "-s", "sftp"),
    ("ssh", "-o", "Ciphers=aes128-ctr,aes256-ctr", "u@h", "-s", "sftp"),
    ("ssh", "-o", 'ProxyCommand=nc "%h" %p', "u@h", "-s", "sftp"),
    ssh_command("u@h", Path("/my state/id"), Path("/a%d b/known_hosts")),
])
def test_sftp_option_comes_back_as_the_same_argv_in_restic(argv: tuple[str, ...]) -> None:
    assert restic_split(sftp_option(argv)) == list(argv)


def test_sftp_option_quotes_only_what_needs_it() -> None:
    assert sftp_option(SSH) == SFTP_OPT
    assert sftp_option(("ssh", "-i", "/a b/id", "h")) == "sftp.command=ssh -i '/a b/id' h"
    assert sftp_option(("ssh", "-o", "A=b,c", "h")) == '"sftp.command=ssh -o A=b,c h"'


@pytest.mark.parametrize("bad", ["", " ", "it's", "C:\\key", "a\nb"])
def test_sftp_option_refuses_what_restic_cannot_get_back(bad: str) -> None:
    with pytest.raises(ValueError, match=r"sftp\.command"):
        sftp_option(("ssh", "-i", bad, "h"))


# --- environment ----------------------------------------------------------------------------


def test_environment_is_minimal_and_holds_the_password_file_path_only(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("correct horse battery staple\n")
    repo = Repository("/srv/r", password, cache_dir=Path("/var/cache/restic"))
    env = make_environment(repo, path="/usr/bin:/bin", home="/root", tmpdir="/tmp")
    assert env == {"PATH": "/usr/bin:/bin", "HOME": "/root", "TMPDIR": "/tmp",
                   "RESTIC_PASSWORD_FILE": str(password),
                   "RESTIC_CACHE_DIR": "/var/cache/restic"}
    assert "correct horse" not in json.dumps(env)


def test_environment_for_copy_follows_the_version() -> None:
    source = Repository("/srv/main", Path("/pw/main"))
    env14 = make_environment(LOCAL, path="/bin", home="/", tmpdir="/tmp", from_repo=source,
                             features=V14)
    assert env14["RESTIC_PASSWORD_FILE"] == str(PW)
    assert env14["RESTIC_FROM_PASSWORD_FILE"] == "/pw/main"
    env13 = make_environment(LOCAL, path="/bin", home="/", tmpdir="/tmp", from_repo=source,
                             features=V13)
    assert (env13["RESTIC_PASSWORD_FILE"], env13["RESTIC_PASSWORD_FILE2"]) == (
        "/pw/main", str(PW))


# --- versions -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "version"), [
    ("restic 0.14.0 compiled with go1.19.8 on linux/amd64\n", (0, 14, 0)),
    ("restic 0.16.4 (v0.16.4-0-g1234) compiled with go1.21.6 on linux/amd64", (0, 16, 4)),
    ("restic 0.18.1-dev (compiled manually) compiled with go1.24 on linux/arm64", (0, 18, 1)),
])
def test_parse_version(text: str, version: tuple[int, int, int]) -> None:
    assert parse_version(text) == version


def test_parse_version_refuses_other_text() -> None:
    with pytest.raises(ValueError, match="no restic version"):
        parse_version("borg 1.2.0")


def test_features_follow_the_version() -> None:
    assert (V14.retry_lock, V14.copy_from_repo, V14.restore_verify, V14.exit_codes) == (
        False, True, True, False)
    assert Features((0, 16, 0)).retry_lock
    assert not V13.copy_from_repo
    assert V17.exit_codes and not V17.check_json
    assert not V14.check_json and V18.check_json and V18.exit_codes and V18.retry_lock


def test_display_masks_a_password_in_the_url() -> None:
    repo = Repository("rest:https://qlvb:s3cret@backup.example:8000/qlvb", PW, name="qlvb")
    assert repo.display == "qlvb (rest:https://qlvb:***@backup.example:8000/qlvb)"
    assert "s3cret" not in redact("Fatal: unable to open rest:https://u:s3cret@h/x")
    assert LOCAL.display == "qlvb (/srv/restic/qlvb)"
    assert Repository("/x", PW).display == "/x"


# --- errors ---------------------------------------------------------------------------------

LOCKED_0_14 = (
    "unable to create lock in backend: repository is already locked by PID 9707 on vm by root "
    "(UID 0, GID 0)\nlock was created at 2026-11-21 10:31:45 (2.68389919s ago)\n"
    "storage ID dd37acf2\nthe `unlock` command can be used to remove stale locks\n")
LOCKED_NEWER = (
    "repo already locked, waiting up to 1m0s for the lock\n"
    "Fatal: unable to create lock in backend: repository is already locked exclusively by "
    "PID 1234 on backup-host by restic user (UID 998, GID 997)\n"
    "lock was created at 2026-11-21 10:00:00 (3m2.5s ago)\nstorage ID 0a1b2c3d\n"
    "the `unlock` command can be used to remove stale locks\n")
LOCKED_OLD = ("Fatal: unable to create lock in backend: repository is already locked by PID 1234 "
              "on host by user (UID 0, GID 0)\nlock was created at 2026-11-21 10:00:00 "
              "(1h2m3s ago)\n")


def test_lock_holder_from_0_14s_wording() -> None:
    holder = parse_lock_holder(LOCKED_0_14)
    assert holder is not None
    assert (holder.pid, holder.host, holder.user, holder.uid, holder.gid, holder.exclusive,
            holder.lock_id) == (9707, "vm", "root", 0, 0, False, "dd37acf2")
    assert holder.created == datetime(2026, 11, 21, 10, 31, 45)
    assert holder.age == pytest.approx(2.68389919)


def test_lock_holder_from_newer_and_older_wording() -> None:
    newer = parse_lock_holder(LOCKED_NEWER)
    assert newer is not None
    assert (newer.pid, newer.host, newer.user, newer.uid, newer.exclusive, newer.age) == (
        1234, "backup-host", "restic user", 998, True, 182.5)
    older = parse_lock_holder(LOCKED_OLD)
    assert older is not None
    assert (older.pid, older.age, older.lock_id) == (1234, 3723.0, None)
    assert parse_lock_holder("Fatal: wrong password or no key found") is None


def test_locked_error_names_holder_and_age() -> None:
    error = classify(LOCKED_0_14, 1, repo=SFTP, command="check")
    assert isinstance(error, RepositoryLocked)
    assert str(error) == (
        "restic check: repository qlvb (sftp:restic-qlvb@127.20.2.10:/repo) is locked by "
        "PID 9707 on vm by root, created 2026-11-21 10:31:45 (2s ago)")
    assert error.holder is not None and error.holder.pid == 9707
    assert "repository is already locked" in error.detail
    waited = error.after_wait(61.2)
    assert str(waited).endswith("; still locked after waiting 61 s")
    assert waited.holder == error.holder and waited.waited == 61.2


def test_exclusive_lock_says_so() -> None:
    error = classify(LOCKED_NEWER, 1, repo=LOCAL, command="backup")
    assert "is locked exclusively by PID 1234 on backup-host by restic user" in str(error)
    assert "(3m2s ago)" in str(error)


def test_locked_by_exit_code_11_of_restic_0_17() -> None:
    error = classify("Fatal: unable to create lock: something new\n", 11, repo=LOCAL,
                     command="prune", exit_codes=True)
    assert isinstance(error, RepositoryLocked) and error.holder is None


def test_exit_codes_decide_only_on_versions_that_have_them() -> None:
    assert type(classify("Fatal: x\n", 12, repo=LOCAL, command="ls", exit_codes=True)) is (
        WrongPassword)
    assert type(classify("Fatal: x\n", 10, repo=LOCAL, command="ls", exit_codes=True)) is (
        NoRepository)
    assert type(classify("Fatal: x\n", 12, repo=LOCAL, command="ls")) is ResticCommandError


def test_json_exit_error_of_restic_0_18_is_read() -> None:
    line = json.dumps({"message_type": "exit_error", "code": 12,
                       "message": "wrong password or no key found"})
    assert isinstance(classify(line + "\n", 12, repo=LOCAL, command="snapshots"), WrongPassword)


# restic 0.18.1's own output (run against a local repository; exit code in the name)
WRONG_PASSWORD_0_18_JSON = (
    '{"message_type":"exit_error","code":12,"message":"Fatal: wrong password or no key '
    'found"}\n')
NO_REPOSITORY_0_18 = (
    "Fatal: repository does not exist: unable to open config file: stat nothere/config: no "
    "such file or directory\nIs there a repository at the following location?\nnothere\n")
LOCKED_0_18_CHECK_JSON = (
    '{"message_type":"summary","num_errors":1,"broken_packs":null,"suggest_repair_index":'
    'false,"suggest_prune":false}\n'
    '{"message_type":"exit_error","code":11,"message":"unable to create lock in backend: '
    "repository is already locked by PID 8370 on vm by root (UID 0, GID 0)\\nlock was created "
    "at 2026-12-06 01:48:56 (3.806330218s ago)\\nstorage ID f37263ef\\nthe `unlock` command "
    'can be used to remove stale locks"}\n')
PACK = "fce21f962ac8e7173afbe6688ee85898f49a3112a35ba367de8ba9d94e8c3886"
DAMAGED_PACK_0_18 = (
    f"pack {PACK} contains 2 errors: [blob d8ee46f1169cd3dd24d033a2004d3083db10c32f3d75c0269"
    "63ea804c4fd38c0: decrypting blob <data/d8ee46f1> from fce21f96 failed: ciphertext "
    "verification failed unexpected pack id 714e7a3b46a0770bdef4e2ad7069c58e7ef50a8bf24310bd"
    "b905b7a6be7615ff]")
DAMAGED_0_18_CHECK_JSON = "".join(json.dumps(m) + "\n" for m in [
    {"message_type": "error", "message": DAMAGED_PACK_0_18 + "\n"},
    {"message_type": "error", "message": "\nThe repository contains damaged pack files. These "
     "damaged files must be removed to repair the repository.\n\n"},
    {"message_type": "error", "message": f"restic repair packs {PACK}\nrestic repair "
     "snapshots --forget\n\n"},
    {"message_type": "error", "message": "Damaged pack files can be caused by backend "
     "problems, hardware problems or bugs in restic.\n"},
    {"message_type": "error", "message": "error for tree 7565200c:\n"},
    {"message_type": "error", "message": "  tree 7565200c: file \"f\" blob 0 not found in "
     "index\n"},
    {"message_type": "summary", "num_errors": 2, "broken_packs": [PACK],
     "suggest_repair_index": False, "suggest_prune": False},
    {"message_type": "exit_error", "code": 1, "message": "Fatal: repository contains errors"}])


def test_restic_0_18s_exit_codes_and_json_classify() -> None:
    wrong = classify(WRONG_PASSWORD_0_18_JSON, 12, repo=LOCAL, command="snapshots",
                     exit_codes=True)
    assert type(wrong) is WrongPassword and wrong.detail == "wrong password or no key found"
    missing = classify(NO_REPOSITORY_0_18, 10, repo=LOCAL, command="snapshots",
                       exit_codes=True)
    assert type(missing) is NoRepository
    assert missing.detail.startswith("repository does not exist: unable to open config file")
    locked = classify(LOCKED_0_18_CHECK_JSON, 11, repo=LOCAL, command="check", exit_codes=True)
    assert isinstance(locked, RepositoryLocked) and locked.holder is not None
    assert (locked.holder.pid, locked.holder.host, locked.holder.lock_id) == (
        8370, "vm", "f37263ef")
    assert "num_errors" not in locked.detail  # the summary is no part of the message


def test_an_exit_code_decides_before_the_text() -> None:
    # restic 0.17+: 11 is "locked" whatever the text says, and a lock message with exit 12
    # is a wrong password (the code is restic's own judgement)
    assert type(classify("Fatal: wrong password or no key found\n", 11, repo=LOCAL,
                         command="ls", exit_codes=True)) is RepositoryLocked
    assert type(classify(LOCKED_0_14, 12, repo=LOCAL, command="ls", exit_codes=True)) is (
        WrongPassword)
    assert type(classify(LOCKED_0_14, 10, repo=LOCAL, command="ls", exit_codes=True)) is (
        NoRepository)


def test_no_repository_needs_exit_10_on_restic_0_17_and_later() -> None:
    # reading the config failed for another reason: restic 0.17+ exits 1, with the same
    # "Is there a repository" words 0.14 prints for a missing repository
    stderr = ("Fatal: unable to open config file: Stat: connection lost\nIs there a repository "
              "at the following location?\nsftp:restic-qlvb@127.20.2.10:/repo\n")
    assert type(classify(stderr, 1, repo=SFTP, command="snapshots", exit_codes=True)) is (
        ConnectionLost)
    assert type(classify(stderr, 1, repo=SFTP, command="snapshots")) is NoRepository
    other = "Fatal: unable to open config file: boom\nIs there a repository at the following " \
            "location?\n/x\n"
    assert type(classify(other, 1, repo=LOCAL, command="ls", exit_codes=True)) is (
        ResticCommandError)


def test_damage_from_restic_0_18s_check_json() -> None:
    error = classify(DAMAGED_0_18_CHECK_JSON, 1, repo=LOCAL, command="check", exit_codes=True)
    assert isinstance(error, RepositoryDamaged)
    assert error.problems == (DAMAGED_PACK_0_18, "error for tree 7565200c:",
                              '  tree 7565200c: file "f" blob 0 not found in index')
    assert error.broken_packs == (PACK,)
    assert error.read_data_problems == (DAMAGED_PACK_0_18,)
    assert f"first: pack {PACK} contains 2 errors" in str(error)
    assert error.detail == "repository contains errors"


def test_damage_in_restic_0_18s_text_leaves_its_advice_out() -> None:
    output = ("read all data\n" + DAMAGED_PACK_0_18 + "\n[0:00] 100.00%  2 / 2 packs\n\n"
              "The repository contains damaged pack files. These damaged files must be removed "
              f"to repair the repository.\n\nrestic repair packs {PACK}\nrestic repair "
              "snapshots --forget\n\nDamaged pack files can be caused by backend problems.\n"
              "Fatal: repository contains errors\n")
    error = classify(output, 1, repo=LOCAL, command="check", exit_codes=True)
    assert isinstance(error, RepositoryDamaged)
    assert error.problems == (DAMAGED_PACK_0_18,)
    assert (error.broken_packs, error.read_data_problems) == ((), None)  # text: phases tell


def test_check_json_of_a_clean_repository() -> None:
    clean = parse_check_json([
        '{"message_type":"summary","num_errors":0,"broken_packs":null,'
        '"suggest_repair_index":false,"suggest_prune":true}'], "1/7")
    assert clean.summary == CheckSummary(num_errors=0, suggest_prune=True)
    assert clean.notes == (PRUNE_NOTE,) and clean.lines == () and clean.read_data_subset == "1/7"
    with pytest.raises(ValueError, match="no summary"):
        parse_check_json(["no errors were found"], None)
    assert check_summary(["no errors were found"]) is None


@pytest.mark.parametrize(("stderr", "kind", "detail"), [
    ("Fatal: wrong password or no key found\n", WrongPassword,
     "wrong password or no key found"),
    ("Fatal: unable to open config file: stat /srv/nope/config: no such file or directory\n"
     "Is there a repository at the following location?\n/srv/nope\n", NoRepository,
     "unable to open config file: stat /srv/nope/config: no such file or directory"),
    ("Fatal: unable to open config file: Lstat: file does not exist\n"
     "Is there a repository at the following location?\nsftp:restic-qlvb@127.20.2.10:/repo\n",
     NoRepository, "unable to open config file: Lstat: file does not exist"),
    ("Fatal: repository does not exist: unable to open config file: stat /x/config: no such "
     "file or directory\nIs there a repository at the following location?\n/x\n",
     NoRepository, "repository does not exist: unable to open config file"),
    ("Fatal: unable to save snapshot: write /repo/data/dc/dc29-tmp-1721: no space left on "
     "device\n", NoSpace, "no space left on device"),
    ('Save(<data/6c423f4a3f>) returned error, retrying after 552ms: Write: sftp: "Failure" '
     '(SSH_FX_FAILURE)\nFatal: unable to save snapshot: Write: sftp: "Failure" '
     "(SSH_FX_FAILURE)\n", NoSpace, 'Fatal: unable to save snapshot: Write: sftp: "Failure"'),
    ("subprocess ssh: ssh: connect to host 127.20.2.10 port 22: Connection refused\n"
     "Fatal: unable to open repository at sftp:restic-qlvb@127.20.2.10:/repo: unable to start "
     "the sftp session, error: read |0: file already closed\n", ConnectionLost,
     "subprocess ssh: ssh: connect to host 127.20.2.10 port 22: Connection refused"),
    ("Save(<data/97143f6f2c>) returned error, retrying after 552ms: OpenFile: connection lost\n"
     "subprocess ssh: Connection to 127.20.2.10 closed by remote host.\n"
     "Fatal: unable to save snapshot: OpenFile: connection lost\n", ConnectionLost,
     "subprocess ssh: Connection to 127.20.2.10 closed by remote host."),
    ("Fatal: unable to save snapshot: ssh command exited: exit status 255\n", ConnectionLost,
     "ssh command exited: exit status 255"),
    ("subprocess ssh: restic-dvc@127.20.2.10: Permission denied (publickey).\n"
     "Fatal: unable to open repository at sftp:restic-dvc@127.20.2.10:/repo: unable to start "
     "the sftp session, error: EOF\n", AccessDenied, "Permission denied (publickey)"),
    ("subprocess ssh: Host key verification failed.\nFatal: unable to open repository\n",
     AccessDenied, "Host key verification failed."),
    # restic copied only ssh's first line before it exited (seen with 0.14 and 0.18)
    ("subprocess ssh: No ED25519 host key is known for 127.20.2.10 and you have requested "
     "strict checking.\nFatal: unable to open repository at sftp:restic-qlvb@127.20.2.10:/repo: "
     "unable to start the sftp session, error: EOF\n", AccessDenied,
     "No ED25519 host key is known for 127.20.2.10"),
])
def test_classification_of_restics_own_wording(stderr: str, kind: type[ResticCommandError],
                                               detail: str) -> None:
    error = classify(stderr, 1, repo=SFTP, command="backup")
    assert type(error) is kind
    assert detail in error.detail
    assert str(error).startswith("restic backup: ")
    assert "qlvb (sftp:restic-qlvb@127.20.2.10:/repo)" in str(error)
    assert (error.repository, error.command, error.returncode) == (SFTP.display, "backup", 1)


def test_a_bare_sftp_failure_outside_a_write_is_not_no_space() -> None:
    error = classify('Fatal: mkdir /repo/x: sftp: "Failure" (SSH_FX_FAILURE)\n', 1, repo=SFTP,
                     command="init")
    assert type(error) is ResticCommandError


def test_damaged_repository_lists_the_problems_not_the_progress() -> None:
    output = ("using temporary cache in /tmp/restic-check-cache-1\ncreate exclusive lock for "
              "repository\nload indexes\ncheck all packs\ncheck snapshots, trees and blobs\n"
              "error for tree 7565200c:\n  decrypting blob 7565 failed: ciphertext verification "
              "failed\n[0:00] 100.00%  1 / 1 snapshots\nread all data\n"
              "Pack ID does not match, want 4941, got 2d02\nFatal: repository contains errors\n")
    error = classify(output, 1, repo=LOCAL, command="check")
    assert isinstance(error, RepositoryDamaged)
    assert error.problems == ("error for tree 7565200c:",
                              "  decrypting blob 7565 failed: ciphertext verification failed",
                              "Pack ID does not match, want 4941, got 2d02")
    assert "qlvb (/srv/restic/qlvb) contains errors" in str(error)
    assert "first: error for tree 7565200c:" in str(error)


def test_unknown_failure_keeps_restics_fatal_line() -> None:
    error = classify("reading repository password from stdin\nFatal: an empty password is not "
                     "a password\n", 1, repo=LOCAL, command="init")
    assert type(error) is ResticCommandError
    assert str(error) == ("restic init: repository qlvb (/srv/restic/qlvb): an empty password "
                          "is not a password")


def test_messages_never_show_a_url_password() -> None:
    repo = Repository("rest:https://u:hunter2@h:8000/r", PW, name="r")
    error = classify("Fatal: unable to open repository at rest:https://u:hunter2@h:8000/r: "
                     "Connection refused\n", 1, repo=repo, command="snapshots")
    assert isinstance(error, ConnectionLost)
    assert "hunter2" not in str(error) and "hunter2" not in error.detail


def test_key_line_is_bounded() -> None:
    assert len(key_line("Fatal: " + "x" * 1000)) == 300
    assert key_line("") == ""


@pytest.mark.parametrize(("text", "seconds"), [
    ("2.68389919s", 2.68389919), ("3m2s", 182.0), ("1h0m0s", 3600.0), ("512ms", 0.512),
    ("1.5µs", 1.5e-6), ("30ns", 3e-8), ("soon", None), ("", None), ("3m garbage", None),
])
def test_go_durations(text: str, seconds: float | None) -> None:
    assert parse_go_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


# --- parsers --------------------------------------------------------------------------------

SUMMARY = ('{"message_type":"summary","files_new":3,"files_changed":1,"files_unmodified":2,'
           '"dirs_new":2,"dirs_changed":0,"dirs_unmodified":1,"data_blobs":3,"tree_blobs":3,'
           '"data_added":31743,"total_files_processed":6,"total_bytes_processed":30000,'
           '"total_duration":0.21425332,"snapshot_id":"a95f3cc1"}')


def test_backup_summary_is_read() -> None:
    lines = ['{"message_type":"status","percent_done":0,"total_files":1}', SUMMARY]
    result = parse_backup_output(lines, 0)
    assert result is not None and result.ok
    assert (result.snapshot_id, result.files_new, result.files_changed, result.files_unmodified,
            result.data_added, result.total_files_processed, result.total_bytes_processed) == (
        "a95f3cc1", 3, 1, 2, 31743, 6, 30000)
    assert result.total_duration == pytest.approx(0.21425332)


def test_restic_0_18s_full_snapshot_id_is_kept_beside_the_short_one() -> None:
    full = "e56b4ee775cb6dd38b1ff67b522287cc2d619090046ef5ac6a57bffc7e9573cb"
    result = parse_backup_output([SUMMARY.replace('"a95f3cc1"', f'"{full}"')], 0)
    assert result is not None
    assert (result.snapshot_id, result.snapshot_full_id) == ("e56b4ee7", full)
    older = parse_backup_output([SUMMARY], 0)  # 0.14 gives only the short ID
    assert older is not None and (older.snapshot_id, older.snapshot_full_id) == (
        "a95f3cc1", None)


def test_exit_3_is_partial_not_success() -> None:
    error = ('{"message_type":"error","error":{"Op":"read","Path":"/proc/self/mem","Err":5},'
             '"during":"archival","item":"/proc/self/mem"}')
    result = parse_backup_output([error, "Warning: at least one source file could not be read",
                                  SUMMARY], 3)
    assert result is not None
    assert result.partial and not result.ok
    assert result.errors == ("/proc/self/mem: read: Input/output error",)


def test_a_missing_source_path_is_partial_although_restic_0_14_exits_0() -> None:
    result = parse_backup_output(["/srv/gone does not exist, skipping", SUMMARY], 0)
    assert result is not None and result.partial and result.skipped == ("/srv/gone",)


def test_no_summary_means_no_result() -> None:
    assert parse_backup_output(["Fatal: unable to save snapshot: boom"], 1) is None


SNAPSHOTS = ('[{"time":"2026-11-21T10:31:32.721753252Z","tree":"0f3b","paths":["/srv"],'
             '"hostname":"vm","username":"root","tags":["system=qlvb"],"id":"a95f3cc1f185",'
             '"short_id":"a95f3cc1"},{"time":"2026-11-21T17:31:32+07:00","parent":"a95f3cc1f185",'
             '"tree":"1a2b","paths":["/srv"],"hostname":"vm","username":"root","id":"b0b1"}]\n')


def test_snapshots_are_read() -> None:
    first, second = parse_snapshots(SNAPSHOTS)
    assert (first.id, first.short_id, first.tags, first.paths, first.hostname) == (
        "a95f3cc1f185", "a95f3cc1", ("system=qlvb",), ("/srv",), "vm")
    assert first.time == datetime(2026, 11, 21, 10, 31, 32, 721753, tzinfo=UTC)
    assert second.time == first.time.replace(microsecond=0)  # +07:00 read as such
    assert (second.short_id, second.parent, second.tags) == ("b0b1", "a95f3cc1f185", ())
    assert first.program_version is None  # restic 0.14 does not record itself


def test_snapshots_of_restic_0_18_say_which_restic_made_them() -> None:
    [made] = parse_snapshots(
        '[{"time":"2026-12-06T01:47:10.5Z","tree":"t","paths":["/srv"],"hostname":"vm",'
        '"username":"root","program_version":"restic 0.18.1","summary":{"files_new":1},'
        '"id":"e56b4ee775cb6dd38b1ff67b522287cc2d619090046ef5ac6a57bffc7e9573cb",'
        '"short_id":"e56b4ee7"}]')
    assert (made.short_id, made.program_version) == ("e56b4ee7", "restic 0.18.1")


def test_forget_is_read_even_with_prunes_prose_after_it() -> None:
    text = ('[{"tags":null,"host":"vm","paths":["/srv"],"keep":[{"time":"2026-11-21T10:32:13Z",'
            '"tree":"t","paths":["/srv"],"hostname":"vm","username":"root","id":"da06",'
            '"short_id":"da06"}],"remove":[{"time":"2026-11-21T10:31:32Z","tree":"t",'
            '"paths":["/srv"],"hostname":"vm","username":"root","id":"a95f","short_id":"a95f"}],'
            '"reasons":[]},{"tags":null,"host":"vm","paths":["/etc"],"keep":[],"remove":null}]\n'
            "loading indexes...\nloading all snapshots...\n[0:00] 100.00%  1 / 1 snapshots\n"
            "deleting unreferenced packs\ndone\n")
    result = parse_forget(text, pruned=True)
    assert [s.id for s in result.kept] == ["da06"]
    assert [s.id for s in result.removed] == ["a95f"]
    assert result.groups[1].remove == () and result.pruned


def test_ls_lines() -> None:
    header = ('{"time":"2026-11-21T10:31:32Z","tree":"t","paths":["/srv"],"hostname":"vm",'
              '"username":"root","id":"a95f","short_id":"a95f","struct_type":"snapshot"}')
    node = ('{"name":"f1","type":"file","path":"/srv/a/f1","uid":0,"gid":0,"size":10000,'
            '"mode":420,"mtime":"2026-11-21T10:31:30Z","struct_type":"node"}')
    directory = '{"name":"a","type":"dir","path":"/srv/a","mode":2147484141,"struct_type":"node"}'
    assert parse_ls_line(header) is None
    assert parse_ls_line("Fatal: no snapshot found") is None
    assert parse_ls_line("{not json") is None
    parsed = parse_ls_line(node)
    assert parsed is not None and (parsed.path, parsed.type, parsed.size) == (
        "/srv/a/f1", "file", 10000)
    totals = Listing()
    for line in (header, node, directory, node.replace('"file"', '"symlink"')):
        found = parse_ls_line(line)
        if found:
            totals.add(found)
    assert totals == Listing(files=1, dirs=1, others=1, total_size=10000)


def test_stats_check_and_restore_are_read() -> None:
    stats = parse_stats('{"total_size":30000,"total_file_count":5,"snapshots_count":1}\n')
    assert (stats.total_size, stats.total_file_count, stats.snapshots_count) == (30000, 5, 1)
    check = parse_check(["load indexes", "pack 929c: not referenced in any index",
                         "1 additional files were found in the repo, which likely contain "
                         "duplicate data.", "no errors were found"], "1/7")
    assert len(check.notes) == 2 and check.read_data_subset == "1/7"
    restored = parse_restore("latest", Path("/r"), [
        "restoring <Snapshot 0983f4bb of [/srv] at 2026-11-21 by root@vm> to /r",
        "verifying files in /r", "finished verifying 3 files in /r (took 0s)"])
    assert restored.verified_files == 3
    assert parse_restore("latest", Path("/r"), ["restoring …"]).verified_files is None


def test_times_with_nanoseconds_and_offsets() -> None:
    assert parse_time("2026-11-21T10:31:45.502511813Z") == datetime(
        2026, 11, 21, 10, 31, 45, 502511, tzinfo=UTC)
    assert parse_time("2026-11-21T17:31:45.5+07:00").utcoffset() == timedelta(hours=7)
    assert parse_time("2026-11-21T10:31:45Z").microsecond == 0


def test_lock_file_is_read_with_uid_and_gid_left_out_when_0() -> None:
    lock = parse_lock("dd37acf2", '{\n  "time": "2026-11-21T10:31:45.502511813Z",\n  '
                                  '"exclusive": false,\n  "hostname": "vm",\n  "username": '
                                  '"root",\n  "pid": 9707\n}\n')
    assert (lock.pid, lock.hostname, lock.exclusive, lock.uid, lock.gid) == (
        9707, "vm", False, 0, 0)


NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def lock(minutes_old: float, host: str = "ctl", pid: int = 4242) -> LockInfo:
    return LockInfo(id="ab" * 32, time=NOW - timedelta(minutes=minutes_old), exclusive=False,
                    hostname=host, username="root", pid=pid)


@pytest.mark.parametrize(("the_lock", "process", "verdict"), [
    (lock(31), "restic", "stale"),           # older than 30 minutes, whoever holds it
    (lock(31, host="elsewhere"), "restic", "stale"),
    (lock(5, host="elsewhere"), "gone", "live"),   # another host's PIDs mean nothing here
    (lock(5), "gone", "stale"),              # this host, process gone
    (lock(5), "restic", "live"),             # this host, restic alive
    (lock(5), "other", "unsafe"),            # PID reused: restic unlock would SIGHUP it
    (lock(5), "unknown", "unsafe"),          # not ours to signal: restic would remove it
    (lock(29.9), "restic", "live"),
])
def test_lock_verdict_is_restics_own_rule(the_lock: LockInfo, process: ProcessState,
                                          verdict: str) -> None:
    probed: list[int] = []

    def probe(pid: int) -> ProcessState:
        probed.append(pid)
        return process

    found, reason = lock_verdict(the_lock, now=NOW, this_host="ctl", process=probe)
    assert found == verdict, reason
    if the_lock.hostname != "ctl" or (found == "stale" and "older" in reason):
        assert probed == []  # other hosts' and old locks' PIDs are never probed


# --- the runner's version-keyed wiring, against a fake restic -------------------------------


def fake_restic(tmp_path: Path, version: str, body: str) -> tuple[Restic, Path]:
    """A shell script standing in for restic ``version``: every other call appends its argv
    (one line) to ``calls`` and runs ``body``."""
    calls = tmp_path / "calls"
    script = tmp_path / "restic"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = version ]; then echo "restic {version} compiled with go1.21 on '
        'linux/amd64"; exit 0; fi\n'
        f'echo "$*" >> {calls}\n'
        f"{body}\n")
    script.chmod(0o755)
    password = tmp_path / "pw"
    password.write_text("pw\n")
    return Restic(Repository(str(tmp_path / "repo"), password, name="qlvb"),
                  binary=str(script)), calls


def test_restic_0_16_waits_for_locks_itself(tmp_path: Path) -> None:
    restic, calls = fake_restic(tmp_path, "0.16.4", 'echo "no errors were found"')
    restic.lock_wait = 90
    assert restic.check().lines == ("no errors were found",)
    assert calls.read_text().split()[:2] == ["--retry-lock", "90s"]


def test_restic_0_18_removes_stale_locks_before_it_waits_for_live_ones(tmp_path: Path) -> None:
    # the first try finds the repository locked (exit 11) and has no --retry-lock: hopnhat
    # first looks for stale locks (none here), and only then lets restic wait for the rest
    quoted = LOCKED_0_14.replace("`", "'")
    restic, calls = fake_restic(tmp_path, "0.18.1", f"""case "$*" in
  *--retry-lock*) echo '[]'; exit 0;;
  *"list locks"*) exit 0;;
  *) printf '%s' "{quoted}" >&2; exit 11;;
esac""")
    restic.lock_wait, restic.remove_stale = 60.0, True
    assert restic.snapshots() == []
    first, listing, waiting = calls.read_text().splitlines()
    assert "--retry-lock" not in first and first.endswith("snapshots --json")
    assert listing.endswith("list locks --no-lock")
    assert waiting.split()[:2] == ["--retry-lock", "60s"]


def test_restic_0_16_without_stale_removal_waits_in_one_try(tmp_path: Path) -> None:
    quoted = LOCKED_0_14.replace("`", "'")
    restic, calls = fake_restic(tmp_path, "0.16.4", f"printf '%s' \"{quoted}\" >&2; exit 1")
    restic.lock_wait = 2.0
    with pytest.raises(RepositoryLocked, match="still locked after waiting") as caught:
        restic.snapshots()
    [attempt] = calls.read_text().splitlines()  # restic waited; hopnhat did not try again
    assert attempt.split()[:2] == ["--retry-lock", "2s"]
    assert caught.value.holder is not None and caught.value.holder.pid == 9707


def test_restic_0_14_lock_wait_is_hopnhats_bounded_retry(tmp_path: Path) -> None:
    quoted = LOCKED_0_14.replace("`", "'")
    restic, calls = fake_restic(tmp_path, "0.14.0", f"printf '%s' \"{quoted}\" >&2; exit 1")
    restic.lock_wait, restic.lock_poll = 1.0, 0.2
    started = time.monotonic()
    with pytest.raises(RepositoryLocked, match="still locked after waiting 1 s") as caught:
        restic.snapshots()
    assert time.monotonic() - started >= 1.0
    attempts = calls.read_text().splitlines()
    assert 3 <= len(attempts) <= 10 and "--retry-lock" not in attempts[0]
    assert caught.value.holder is not None and caught.value.holder.pid == 9707


def test_restic_0_17_exit_codes_classify(tmp_path: Path) -> None:
    restic, _ = fake_restic(tmp_path, "0.17.3", 'echo "Fatal: something" >&2; exit 12')
    with pytest.raises(WrongPassword):
        restic.snapshots()
    (tmp_path / "old").mkdir()
    restic14, _ = fake_restic(tmp_path / "old", "0.14.0", 'echo "Fatal: something" >&2; exit 12')
    with pytest.raises(ResticCommandError) as caught:
        restic14.snapshots()
    assert type(caught.value) is ResticCommandError


def test_restic_0_18_checks_with_json_and_hands_on_text(tmp_path: Path) -> None:
    summary = ('{"message_type":"summary","num_errors":0,"broken_packs":null,'
               '"suggest_repair_index":true,"suggest_prune":false}')
    restic, calls = fake_restic(tmp_path, "0.18.1", f"echo '{summary}'")
    seen: list[str] = []
    result = restic.check("all", on_line=seen.append)
    assert calls.read_text().split()[-3:] == ["check", "--json", "--read-data"]
    assert result.summary is not None and result.summary.suggest_repair_index
    assert len(result.notes) == 1 and "repair index" in result.notes[0]
    assert seen == []  # the summary is data, not a line of text


def test_restic_0_18_damage_reaches_on_line_as_text(tmp_path: Path) -> None:
    quoted = DAMAGED_0_18_CHECK_JSON.replace("'", "'\\''")
    restic, _ = fake_restic(tmp_path, "0.18.1", f"printf '%s' '{quoted}' >&2; exit 1")
    seen: list[str] = []
    with pytest.raises(RepositoryDamaged) as caught:
        restic.check(on_line=seen.append)
    assert DAMAGED_PACK_0_18 in seen and not any(line.startswith("{") for line in seen)
    assert caught.value.broken_packs == (PACK,)


def test_restic_0_14_checks_without_json(tmp_path: Path) -> None:
    restic, calls = fake_restic(tmp_path, "0.14.0", 'echo "no errors were found"')
    result = restic.check()
    assert "--json" not in calls.read_text().split()
    assert (result.lines, result.summary) == (("no errors were found",), None)


GONE, HELD = "a1" * 32, "b2" * 32


@pytest.mark.parametrize("missing", [
    f"open /repo/locks/{GONE}: no such file or directory",  # a local repository
    "file does not exist",                                   # an SFTP one
])
def test_a_lock_gone_before_it_is_read_is_left_out_at_restic_0_14s_first_retry(
        tmp_path: Path, missing: str) -> None:
    # restic 0.14 retries reading a missing file ten times (about 45 s) before it fails:
    # a lock removed between the listing and its reading (its holder just ended) is let go
    # at the first retry
    restic, calls = fake_restic(tmp_path, "0.14.0", f"""case "$*" in
  *"list locks"*) echo {GONE}; echo {HELD}; exit 0;;
  *{GONE}*) echo "Load(<lock/{GONE[:10]}>, 0, 0) returned error, retrying after 552ms: \
{missing}" >&2
    trap 'kill $w; exit 130' INT; sleep 60 >/dev/null 2>&1 & w=$!; wait $w
    echo "Load(<lock/{GONE[:10]}>, 0, 0) failed: {missing}" >&2; exit 1;;
  *) printf '{{\\n  "time": "2026-11-21T10:31:45.5Z",\\n  "exclusive": true,\\n  \
"hostname": "vm",\\n  "username": "root",\\n  "pid": 9707\\n}}\\n';;
esac""")
    started = time.monotonic()
    [lock] = restic.locks()
    assert time.monotonic() - started < 10
    assert (lock.id, lock.pid, lock.exclusive, lock.hostname) == (HELD, 9707, True, "vm")
    assert [line.split()[-2] for line in calls.read_text().splitlines()[1:]] == [GONE, HELD]


def test_a_hung_restic_is_stopped_and_named(tmp_path: Path) -> None:
    restic, _ = fake_restic(tmp_path, "0.14.0", "exec sleep 30")
    restic.timeout = 1
    with pytest.raises(ResticCommandError, match=r"restic check: repository qlvb .*no answer"):
        restic.check()
    with pytest.raises(ResticCommandError, match=r"restic snapshots: repository qlvb .*no answer"):
        restic.snapshots()


def test_a_missing_restic_is_named(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("pw\n")
    restic = Restic(Repository("/r", password, name="qlvb"), binary=str(tmp_path / "none"))
    with pytest.raises(ResticCommandError, match=r"restic version: repository qlvb .*not found"):
        restic.version()


def test_process_state_tells_gone_from_other() -> None:
    assert process_state(os.getpid()) == "other"  # python, not restic
    child = subprocess.Popen(["true"])
    child.wait()
    assert process_state(child.pid) == "gone"


def test_when_restic_loses_ssh_s_words_ssh_is_asked(tmp_path: Path) -> None:
    # restic 0.14 can exit before copying ssh's stderr: only "unable to start the sftp
    # session, error: EOF" is left, and the adapter asks the ssh command itself why
    fake_ssh = tmp_path / "ssh"
    fake_ssh.write_text("#!/bin/sh\necho 'restic-dvc@127.20.2.10: Permission denied "
                        "(publickey).' >&2\nexit 255\n")
    fake_ssh.chmod(0o755)
    restic, _ = fake_restic(tmp_path, "0.14.0", "echo 'Fatal: unable to open repository at "
                            "sftp:restic-dvc@127.20.2.10:/repo: unable to start the sftp "
                            "session, error: EOF' >&2; exit 1")
    restic.repo = Repository("sftp:restic-dvc@127.20.2.10:/repo", restic.repo.password_file,
                             sftp_command=(str(fake_ssh), "-s", "sftp"), name="dvc")
    with pytest.raises(AccessDenied, match=r"Permission denied \(publickey\)"):
        restic.snapshots()


def test_restic_0_18_losing_ssh_s_words_in_json_asks_ssh_too(tmp_path: Path) -> None:
    # restic 0.18.1 against a host whose key is unknown, seen in the lab: no ssh line at all
    # (or only one that says nothing of why), the fatal error as JSON
    fake_ssh = tmp_path / "ssh"
    fake_ssh.write_text("#!/bin/sh\necho 'No ED25519 host key is known for 127.20.2.10 and "
                        "you have requested strict checking.' >&2\necho 'Host key verification "
                        "failed.' >&2\nexit 255\n")
    fake_ssh.chmod(0o755)
    said = json.dumps({"message_type": "exit_error", "code": 1, "message": (
        "Fatal: unable to open repository at sftp:restic-qlvb@127.20.2.10:/repo: unable to "
        "start the sftp session, error: error receiving version packet from server: server "
        "unexpectedly closed connection: unexpected EOF")})
    restic, _ = fake_restic(tmp_path, "0.18.1", "echo 'subprocess ssh: Warning: no tty' >&2; "
                            f"echo '{said}' >&2; exit 1")
    restic.repo = Repository("sftp:restic-qlvb@127.20.2.10:/repo", restic.repo.password_file,
                             sftp_command=(str(fake_ssh), "-s", "sftp"), name="qlvb")
    with pytest.raises(AccessDenied, match=r"Host key verification failed|strict checking"):
        restic.snapshots()


# --- restic's retries: stopped at the first one that cannot succeed -----------------------

RETRY_LOST = ("Save(<data/c2a9ae6dd9>) returned error, retrying after 552.330144ms: "
              "Write: connection lost")
RETRY_FULL = ('Save(<data/f5e7222fc9>) returned error, retrying after 437.171317ms: Write: '
              'sftp: "Failure" (SSH_FX_FAILURE)')
# a restic that says one retry line, then retries for 30 s (as restic's ten retries would)
RETRYING = "printf '%s\\n' '{line}' >&2; trap 'echo interrupted >&2; exit 130' INT; " \
           "sleep 30 & wait; echo 'Fatal: unable to save snapshot: {tail}' >&2; exit 1"


def test_a_retry_line_is_read() -> None:
    retry = parse_retry(RETRY_LOST)
    assert retry == Retry("Save", "<data/c2a9ae6dd9>", "Write: connection lost")
    assert retry.is_write
    assert parse_retry("Load(<data/3d91522b15>, 0, 0) returned error, retrying after 498ms: "
                       "open x: no such file or directory") == Retry(
        "Load", "<data/3d91522b15>, 0, 0", "open x: no such file or directory")
    assert parse_retry("Fatal: unable to save snapshot: connection lost") is None


@pytest.mark.parametrize(("error", "futile"), [
    ("Write: connection lost", True), ("OpenFile: connection lost", True),
    ("ssh command exited: exit status 255", True),
    ("failed to send packet header: write |1: file already closed", True),
    ('Write: sftp: "Failure" (SSH_FX_FAILURE)', False), ("timeout", False)])
def test_only_a_gone_sftp_session_makes_a_retry_futile(error: str, futile: bool) -> None:
    reason = futile_sftp_retry(Retry("Save", "<data/x>", error))
    assert (reason is not None) is futile


def _sftp(restic: Restic) -> Restic:
    restic.repo = Repository("sftp:restic-qlvb@repo:/repo", restic.repo.password_file,
                             name="qlvb")
    return restic


def test_a_lost_sftp_connection_stops_restic_at_its_first_retry(tmp_path: Path) -> None:
    restic, _ = fake_restic(tmp_path, "0.14.0",
                            RETRYING.format(line=RETRY_LOST, tail="connection lost"))
    started = time.monotonic()
    with pytest.raises(ConnectionLost, match="stopped at its first retry") as caught:
        _sftp(restic).check()
    assert time.monotonic() - started < 15  # not restic's minute of retries
    assert "connection lost" in caught.value.detail


def test_a_local_repository_keeps_restics_retries(tmp_path: Path) -> None:
    restic, _ = fake_restic(tmp_path, "0.14.0",
                            RETRYING.replace("sleep 30", "sleep 1").format(
                                line=RETRY_LOST, tail="connection lost"))
    with pytest.raises(ConnectionLost) as caught:
        restic.check()
    assert "first retry" not in str(caught.value)  # restic ran its course


def test_the_callers_judgement_stops_restic_with_its_reason(tmp_path: Path) -> None:
    restic, _ = fake_restic(tmp_path, "0.14.0",
                            RETRYING.format(line=RETRY_FULL, tail='sftp: "Failure"'))
    judged: list[Retry] = []

    def give_up(retry: Retry) -> str | None:
        judged.append(retry)
        return "the storage is full"
    restic.give_up = give_up
    with pytest.raises(NoSpace, match=r"; the storage is full$"):
        _sftp(restic).check()
    assert [r.error for r in judged] == ['Write: sftp: "Failure" (SSH_FX_FAILURE)']
