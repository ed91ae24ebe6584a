"""restic against a rest-server: the location comes from a file (credentials never in argv),
the server's CA is pinned, and a write refused past the system's quota (507) is
QuotaExceeded, stopped at restic's first retry."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.adapters.restic import Restic
from orchestrator.adapters.restic_argv import (
    Features,
    Repository,
    base_argv,
    make_backup_argv,
    make_check_argv,
    make_copy_argv,
    make_forget_argv,
    make_init_argv,
    make_snapshots_argv,
)
from orchestrator.adapters.restic_errors import (
    NoSpace,
    QuotaExceeded,
    Retry,
    classify,
    futile_quota_retry,
    parse_retry,
)

PW = Path("/run/hopnhat/restic-dvc.password")
SECRET = "s3cr3t-rest-pw"
LOCATION = Path("/run/hopnhat/restic-dvc.location")
CA = Path("/etc/hopnhat/restic-ca.pem")
URL = "rest:https://127.20.2.10:8104/dvc/"
REST = Repository(URL, PW, name="dvc@repo-qnam-01", location_file=LOCATION, cacert=CA)
MAINTENANCE = Repository("rest:https://127.20.2.10:8000/dvc/dvc/", PW, name="dvc@repo-qnam-01",
                         location_file=Path("/run/hopnhat/m.location"), cacert=CA,
                         cache_dir=Path("/var/cache/restic"))
LOCAL = Repository("/srv/vault/dvc", Path("/run/hopnhat/vault.password"), name="dvc@vault")
V13 = Features((0, 13, 1))
V18 = Features((0, 18, 1))

RETRY_507 = ("Save(<data/1234abcd56>) returned error, retrying after 720.3ms: server response "
             "unexpected: 507 Insufficient Storage (507)")
TOO_BIG = "incoming blob (123 bytes) would exceed maximum size of repository (100 bytes)"


# --- argv ------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    pytest.param(base_argv(REST), id="base"),
    pytest.param(make_snapshots_argv(REST), id="snapshots"),
    pytest.param(make_backup_argv(REST, ["/srv/dvc"]), id="backup"),
    pytest.param(make_check_argv(REST, "all"), id="check"),
    pytest.param(make_forget_argv(REST, {"within-daily": "14d"}), id="forget"),
    pytest.param(make_init_argv(REST), id="init"),
])
def test_a_rest_repository_is_opened_from_its_file_with_its_ca(argv: tuple[str, ...]) -> None:
    assert argv[:6] == ("restic", "--repository-file", str(LOCATION), "--cacert", str(CA),
                        "--no-cache")
    assert "--repo" not in argv and "-r" not in argv
    assert not any(URL in arg or "rest:" in arg or "@" in arg for arg in argv)


def test_a_rest_repository_with_a_cache_keeps_it() -> None:
    assert base_argv(MAINTENANCE) == ("restic", "--repository-file", "/run/hopnhat/m.location",
                                      "--cacert", str(CA))


def test_the_ca_alone_goes_with_a_url() -> None:
    plain = Repository(URL, PW, cacert=CA)
    assert base_argv(plain) == ("restic", "--repo", URL, "--cacert", str(CA), "--no-cache")


def test_copy_from_a_rest_repository_reads_its_file_and_adds_its_ca() -> None:
    assert make_copy_argv(REST, LOCAL, ["abc123"], features=V18) == (
        "restic", "--repo", "/srv/vault/dvc", "--no-cache", "--cacert", str(CA),
        "copy", "--from-repository-file", str(LOCATION), "abc123")


def test_copy_between_rest_repositories_of_one_ca_names_it_once() -> None:
    argv = make_copy_argv(REST, MAINTENANCE, features=V18)
    assert argv.count("--cacert") == 1
    assert argv == ("restic", "--repository-file", "/run/hopnhat/m.location", "--cacert",
                    str(CA), "copy", "--from-repository-file", str(LOCATION))


def test_copy_from_a_repository_of_another_ca_names_both() -> None:
    other = Repository(URL, PW, location_file=LOCATION, cacert=Path("/etc/other-ca.pem"))
    argv = make_copy_argv(other, MAINTENANCE, features=V18)
    cas = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--cacert"]
    assert cas == [str(CA), "/etc/other-ca.pem"]
    assert argv.index("copy") > max(i for i, arg in enumerate(argv) if arg == "--cacert")


@pytest.mark.parametrize(("source", "target"), [(REST, LOCAL), (LOCAL, REST)])
def test_old_restic_cannot_copy_with_a_location_file(source: Repository,
                                                     target: Repository) -> None:
    with pytest.raises(ValueError, match="reads no repository location from a file"):
        make_copy_argv(source, target, features=V13)


def test_init_copies_chunker_parameters_from_a_rest_repositorys_file() -> None:
    assert make_init_argv(LOCAL, chunker_from=REST, features=V18)[-4:] == (
        "init", "--copy-chunker-params", "--from-repository-file", str(LOCATION))
    assert make_init_argv(MAINTENANCE, chunker_from=LOCAL, features=V18)[-4:] == (
        "init", "--copy-chunker-params", "--from-repo", "/srv/vault/dvc")


def test_init_from_a_rest_repository_of_another_ca_names_its_ca() -> None:
    argv = make_init_argv(LOCAL, chunker_from=REST, features=V18)
    assert "--cacert" in argv and argv[argv.index("--cacert") + 1] == str(CA)


def test_old_restic_init_from_a_location_file_gets_no_flag_it_does_not_know() -> None:
    try:
        argv = make_init_argv(LOCAL, chunker_from=REST, features=V13)
    except ValueError:
        return
    assert "--from-repository-file" not in argv


# --- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("stderr", [
    pytest.param(RETRY_507 + "\nFatal: unable to save snapshot: server response unexpected: "
                 "507 Insufficient Storage (507)\n", id="507"),
    pytest.param(f"Save(<data/1234abcd56>) failed: {TOO_BIG}\n", id="max-size"),
    pytest.param('{"message_type":"exit_error","code":1,"message":"Fatal: unable to save '
                 'snapshot: server response unexpected: 507 Insufficient Storage (507)"}\n',
                 id="restic-0.18-json"),
])
def test_a_write_refused_past_the_quota_is_quota_exceeded(stderr: str) -> None:
    error = classify(stderr, 1, repo=REST, command="backup", exit_codes=True)
    assert type(error) is QuotaExceeded
    assert "quota" in str(error) and "dvc@repo-qnam-01" in str(error)
    assert error.exit_code != 0
    assert "507" in error.detail or "maximum size" in error.detail


def test_a_full_disk_is_still_no_space_not_quota() -> None:
    error = classify("Fatal: unable to save: write /srv/x: no space left on device\n", 1,
                     repo=REST, command="backup")
    assert type(error) is NoSpace


def test_a_quota_message_names_no_credential() -> None:
    stderr = (f"Fatal: unable to open rest:https://dvc:{SECRET}@127.20.2.10:8104/dvc/: "
              "507 Insufficient Storage\n")
    error = classify(stderr, 1, repo=REST, command="backup")
    assert isinstance(error, QuotaExceeded)
    assert SECRET not in str(error) and SECRET not in error.detail


def test_a_507_retry_is_futile_with_a_reason() -> None:
    retry = parse_retry(RETRY_507)
    assert retry == Retry("Save", "<data/1234abcd56>",
                          "server response unexpected: 507 Insufficient Storage (507)")
    reason = futile_quota_retry(retry)
    assert reason is not None and "quota" in reason


@pytest.mark.parametrize("error", [
    TOO_BIG, "server response unexpected: 507 INSUFFICIENT STORAGE (507)"])
def test_a_max_size_retry_is_futile_whatever_its_case(error: str) -> None:
    assert futile_quota_retry(Retry("Save", "<data/x>", error)) is not None


@pytest.mark.parametrize("error", [
    "server response unexpected: 500 Internal Server Error (500)",
    "Post \"https://127.20.2.10:8104/dvc/data/x\": dial tcp: connection refused",
    "Write: connection lost"])
def test_an_ordinary_retry_is_left_to_restic(error: str) -> None:
    assert futile_quota_retry(Retry("Save", "<data/x>", error)) is None


def test_restic_at_the_quota_is_stopped_at_its_first_retry(tmp_path: Path) -> None:
    """restic retries a refused write for about a minute; the runner stops it at once."""
    script = tmp_path / "restic"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = version ]; then echo "restic 0.18.1 compiled with go1.24 on '
        'linux/amd64"; exit 0; fi\n'
        f"echo '{RETRY_507}' >&2\n"
        "sleep 30 >/dev/null 2>&1 & w=$!; trap 'kill $w; exit 130' INT; wait $w; exit 1\n")
    script.chmod(0o755)
    password = tmp_path / "pw"
    password.write_text("pw\n")
    repo = Repository(URL, password, name="dvc@repo-qnam-01",
                      location_file=tmp_path / "location", cacert=tmp_path / "ca.pem")
    restic = Restic(repo, binary=str(script), timeout=60)
    started = time.monotonic()
    with pytest.raises(QuotaExceeded, match="stopped at restic's first retry"):
        restic.backup(["/srv/dvc"])
    assert time.monotonic() - started < 5  # not restic's minute of retries
