"""``configure``: which hosts a run covers, how ansible-runner's data is judged, what the ledger
keeps, what the CLI prints and returns — and the roles' own contract (argument_specs)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.actions import configure as configure_action
from orchestrator.actions.configure import (
    ConfigurePlan,
    configure,
    extra_vars,
    judge,
    plan,
    wait_for_hosts,
)
from orchestrator.adapters.ansible import (
    HostEvent,
    HostStats,
    Notice,
    PlaybookRequest,
    PlaybookRun,
    command_line,
    failure_message,
    host_event,
    notice_of,
    stats_by_host,
    yaml_inventory,
)
from orchestrator.adapters.vault import read_vault
from orchestrator.cli import app
from orchestrator.errors import PlanError, SecretError
from orchestrator.estate.inventory import build_inventory
from orchestrator.lab.secrets import ensure_lab_secrets
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from tests.helpers import REPO, free_port

ROLES = REPO / "playbooks" / "roles"


def run_of(hosts: dict[str, HostStats], status: str = "successful", rc: int = 0,
           notices: tuple[Notice, ...] = (), failures: tuple[HostEvent, ...] = ()
           ) -> PlaybookRun:
    return PlaybookRun("run", status, rc, hosts, notices, failures, Path("/tmp/a"), 1.0)


def host(name: str, **counts: int) -> HostStats:
    return HostStats(name, **counts)


def fresh_secrets(paths: Paths) -> None:
    """A vault of the copy's own (a developer's lab vault may sit in inventory/)."""
    paths.vault_file.unlink(missing_ok=True)
    ensure_lab_secrets(paths)


# --- the plan -------------------------------------------------------------------------------


def test_configure_of_the_estate_covers_every_host(estate_copy: Any) -> None:
    estate = estate_copy.load()
    the_plan = plan(estate)
    assert the_plan.limit is None
    assert set(the_plan.hosts) == {vm.name for vm in estate.vms} | {"repo-qnam-01",
                                                                    "vault-danang-01"}
    assert the_plan.forks == 20  # the estate's default


def test_configure_of_one_system_is_limited_to_its_hosts_and_repository_host(
        estate_copy: Any) -> None:
    the_plan = plan(estate_copy.load(), ["qlvb"], check=True, diff=True)
    assert the_plan.limit == "system_qlvb,repo-qnam-01"
    assert the_plan.hosts == ("qlvb-app-01", "qlvb-app-02", "qlvb-db-01", "repo-qnam-01")
    assert (the_plan.check, the_plan.diff, the_plan.systems) == (True, True, ("qlvb",))


def test_an_unknown_system_is_bad_input(estate_copy: Any) -> None:
    with pytest.raises(PlanError) as caught:
        plan(estate_copy.load(), ["qlvb", "nope"])
    assert caught.value.exit_code == 2
    assert "'nope'" in str(caught.value)


def test_forks_come_from_the_estate(estate_copy: Any) -> None:
    estate_copy.edit("estate.yml", lambda data: data.update(configuration={"forks": 7}))
    assert plan(estate_copy.load()).forks == 7


def test_forks_out_of_range_are_an_estate_problem(estate_copy: Any) -> None:
    estate_copy.edit("estate.yml", lambda data: data.update(configuration={"forks": 0}))
    estate_copy.assert_only_problems(("estate.yml", "configuration.forks", "greater than"))


def test_extra_vars_name_paths_and_vault_keys_but_hold_no_secret(estate_copy: Any,
                                                                tmp_path: Path) -> None:
    paths = Paths(tmp_path / "state", estate_copy.load())
    fresh_secrets(paths)
    extra = extra_vars(paths, ["qlvb"])
    assert extra["hopnhat_state_dir"] == str(tmp_path / "state")
    assert extra["hopnhat_vault_file"] == str(paths.vault_file)
    assert extra["hopnhat_known_hosts_file"] == str(paths.known_hosts)
    assert extra["hopnhat_selected_systems"] == ["qlvb"]
    assert "hopnhat_selected_systems" not in extra_vars(paths)
    text = json.dumps(extra)
    for secret in read_vault(paths.vault_file, paths.vault_password_file).values():
        assert secret not in text


# --- judging a run --------------------------------------------------------------------------


@pytest.mark.parametrize(("run", "verdict"), [
    pytest.param(run_of({"a": host("a", ok=9, changed=2), "b": host("b", ok=9)}),
                 ("ok", 0), id="every-host-ok"),
    pytest.param(run_of({"a": host("a", ok=9), "b": host("b", ok=3, failed=1)}, "failed", 2),
                 ("partial", 3), id="one-host-failed"),
    pytest.param(run_of({"a": host("a", ok=9), "b": host("b", unreachable=1)}, "failed", 4),
                 ("partial", 3), id="one-host-unreachable"),
    pytest.param(run_of({"a": host("a", failed=1), "b": host("b", unreachable=1)}, "failed", 2),
                 ("failed", 1), id="no-host-configured"),
    pytest.param(run_of({}, "failed", 4), ("failed", 1), id="run-failed-before-any-host"),
    pytest.param(run_of({"a": host("a", ok=3)}, "failed", 1), ("failed", 1),
                 id="rc-without-host-failure"),
    pytest.param(run_of({"a": host("a", ok=3), "b": host("b", failed=1)}, "timeout", 254),
                 ("failed", 1), id="timeout"),
])
def test_a_run_is_judged_from_the_runners_stats(run: PlaybookRun,
                                                verdict: tuple[str, int]) -> None:
    found = judge(run)
    assert (found.status, found.exit_code) == verdict


# --- configure with a stand-in runner -------------------------------------------------------


def answering(address: str, port: int, timeout: float) -> bool:
    """A TCP probe to which every host answers at once."""
    return True


class FakeRunner:
    def __init__(self, run: PlaybookRun) -> None:
        self.run = run
        self.calls: list[tuple[PlaybookRequest, Path, str]] = []

    def __call__(self, request: PlaybookRequest, private_data_dir: Path, ident: str, *,
                 on_event: Any = None, on_task: Any = None) -> PlaybookRun:
        self.calls.append((request, private_data_dir, ident))
        if on_event is not None:
            on_event(HostEvent("qlvb-db-01", "Write the repository password file",
                               "restic_client", "changed"))
        return self.run


@pytest.fixture
def paths(estate_copy: Any, tmp_path: Path) -> Paths:
    the_paths = Paths(tmp_path / "state", estate_copy.load())
    fresh_secrets(the_paths)
    return the_paths


def test_configure_runs_site_yml_and_records_the_run(paths: Paths) -> None:
    notice = Notice("qlvb-db-01", "backup_schedule", "Say that the timer was installed but "
                    "not enabled", "hopnhat-backup-qlvb.timer ... NOT enabled")
    failure = HostEvent("repo-qnam-01", "Create the SFTP accounts", "restic_repository",
                        "failed", "useradd: cannot lock /etc/passwd")
    fake = FakeRunner(run_of({"qlvb-db-01": host("qlvb-db-01", ok=40, changed=5),
                              "repo-qnam-01": host("repo-qnam-01", ok=4, failed=1)},
                             "failed", 2, (notice,), (failure,)))
    events: list[HostEvent] = []
    with Ledger(paths.ledger) as ledger:
        result = configure(paths, plan(paths.estate, ["qlvb"]), ledger=ledger, runner=fake,
                           on_event=events.append, probe=answering)
        request, private_data_dir, ident = fake.calls[0]
        assert request.playbook == REPO / "playbooks" / "site.yml"
        assert request.vault_password_file == paths.vault_password_file
        assert request.limit == "system_qlvb,repo-qnam-01"
        assert request.forks == 20
        assert request.inventory == build_inventory(paths)
        assert private_data_dir == paths.state / "runs" / result.run_id
        assert ident == result.run_id
        assert [e.task for e in events] == ["Write the repository password file"]
        assert (result.verdict.status, result.exit_code) == ("partial", 3)
        [run] = ledger.runs("configure")
        assert (run.id, run.status) == (result.run_id, "partial")
        assert run.summary is not None and run.summary["failed_hosts"] == ["repo-qnam-01"]
        recorded = ledger.events(result.run_id)
        assert {(e["subject"], e["kind"]) for e in recorded} == {
            ("qlvb-db-01", "host"), ("repo-qnam-01", "host"), ("qlvb-db-01", "notice"),
            ("repo-qnam-01", "failure")}
        assert next(e for e in recorded if e["kind"] == "host" and e["subject"] == "qlvb-db-01"
                    )["changed"] == 5


def test_configure_without_the_vault_password_stops_before_ansible(paths: Paths) -> None:
    paths.vault_password_file.unlink()
    fake = FakeRunner(run_of({}))
    with Ledger(paths.ledger) as ledger:
        with pytest.raises(SecretError) as caught:
            configure(paths, plan(paths.estate), ledger=ledger, runner=fake, probe=answering)
        assert caught.value.exit_code == 2
        assert fake.calls == []
        assert [r.status for r in ledger.runs("configure")] == ["failed"]


def test_configure_with_a_wrong_vault_password_stops_before_ansible(paths: Paths) -> None:
    """A wrong password (or a broken vault) is a named exit 2 before any host is touched,
    not a failure inside every host's play."""
    paths.vault_password_file.write_text("not-the-password\n")
    fake = FakeRunner(run_of({}))
    with Ledger(paths.ledger) as ledger:
        with pytest.raises(SecretError) as caught:
            configure(paths, plan(paths.estate), ledger=ledger, runner=fake, probe=answering)
        assert caught.value.exit_code == 2 and str(paths.vault_file) in str(caught.value)
        assert "not-the-password" not in str(caught.value)
        assert fake.calls == []
        assert [r.status for r in ledger.runs("configure")] == ["failed"]


# --- ansible-runner's data ------------------------------------------------------------------


def test_stats_are_read_per_host() -> None:
    stats = {"ok": {"a": 10, "b": 3}, "changed": {"a": 2}, "failures": {"b": 1},
             "dark": {"c": 1}, "skipped": {"a": 4}, "processed": {"a": 1, "b": 1, "c": 1},
             "rescued": {}, "ignored": {}}
    found = stats_by_host(stats)
    assert found["a"] == HostStats("a", ok=10, changed=2, skipped=4)
    assert [found[h].status for h in ("a", "b", "c")] == ["changed", "failed", "unreachable"]
    assert stats_by_host(None) == {}


def _event(kind: str, **data: Any) -> dict[str, Any]:
    return {"event": kind, "event_data": {"host": "h1", "task": "T", "role": "base", **data}}


def _host_event(kind: str, **data: Any) -> HostEvent:
    """The host event of one runner event (which must make one)."""
    event = host_event(_event(kind, **data))
    assert event is not None, kind
    return event


def test_task_results_become_host_events() -> None:
    assert _host_event("runner_on_ok", res={"changed": True}).outcome == "changed"
    assert _host_event("runner_on_ok", res={"changed": False}).outcome == "ok"
    assert _host_event("runner_on_skipped").outcome == "skipped"
    failed = _host_event("runner_on_failed", res={"msg": "non-zero return code",
                                                  "stderr": "a\nFatal: wrong password"})
    assert (failed.outcome, failed.message) == ("failed", "non-zero return code: Fatal: wrong "
                                                          "password")
    ignored = _host_event("runner_on_failed", ignore_errors=True, res={"msg": "x"})
    assert ignored.ignored
    assert _host_event("runner_on_unreachable", res={"msg": "timed out"}).message == \
        "timed out"
    assert host_event({"event": "playbook_on_task_start", "event_data": {"task": "T"}}) is None


def test_a_no_log_failure_says_only_that_it_was_hidden() -> None:
    res = {"censored": "the output has been hidden due to the fact that 'no_log: true' was "
                       "specified for this result", "changed": False}
    assert "hidden" in failure_message(res)


def test_a_roles_debug_message_is_a_notice_and_nothing_else_is() -> None:
    found = notice_of(_event("runner_on_ok", role="backup_schedule",
                             resolved_action="ansible.builtin.debug",
                             res={"msg": "hopnhat-backup-qlvb.timer\nNOT enabled"}))
    assert found == Notice("h1", "backup_schedule", "T", "hopnhat-backup-qlvb.timer NOT enabled")
    assert notice_of(_event("runner_on_ok", resolved_action="ansible.builtin.copy",
                            res={"msg": "x"})) is None
    assert notice_of(_event("runner_on_ok", role=None, resolved_action="ansible.builtin.debug",
                            res={"msg": "x"})) is None


def test_the_command_line_passes_the_vault_password_as_a_file() -> None:
    request = PlaybookRequest(Path("site.yml"), {}, vault_password_file=Path("/s/vault-pw"),
                              check=True, diff=True, tags=("base_configure",))
    assert command_line(request) == ["--vault-password-file", "/s/vault-pw", "--check", "--diff",
                                     "--tags", "base_configure"]


def test_the_run_inventory_file_is_the_derived_inventory(paths: Paths, tmp_path: Path) -> None:
    """The inventory file a run keeps says what the dynamic inventory says (checked with
    ansible-inventory itself)."""
    dynamic = build_inventory(paths)
    path = tmp_path / "hosts.json"
    path.write_text(json.dumps(yaml_inventory(dynamic)))
    binary = Path(sys.executable).parent / "ansible-inventory"
    done = subprocess.run([str(binary), "-i", str(path), "--list"], capture_output=True,
                          text=True, timeout=120, check=True)
    static = json.loads(done.stdout)
    for name, own in dynamic["_meta"]["hostvars"].items():
        # ansible-inventory shows a host's group vars among its own: compare what the host has
        assert {k: static["_meta"]["hostvars"][name][k] for k in own} == own, name
    for name, group in dynamic.items():
        if name in ("_meta", "all"):
            continue
        assert sorted(static[name].get("hosts", [])) == sorted(group["hosts"]), name
    assert set(static) >= {n for n in dynamic if n != "_meta"}


# --- the roles' contract --------------------------------------------------------------------


@pytest.mark.parametrize("role", ["base", "restic_client", "restic_repository",
                                  "backup_schedule"])
def test_every_public_variable_is_declared_typed_described_and_defaulted(role: str) -> None:
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
    spec = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
    options = spec["argument_specs"]["main"]["options"]
    assert set(options) == set(defaults)
    for name, option in options.items():
        assert name.startswith(f"{role}_"), name
        assert option.get("type") and option.get("description"), name
        expected = defaults[name]
        given = option["default"]
        if isinstance(expected, str):
            expected, given = " ".join(expected.split()), " ".join(str(given).split())
        assert given == expected, name


@pytest.mark.parametrize("role", ["base", "restic_client", "restic_repository",
                                  "backup_schedule"])
def test_main_only_includes_preflight_install_and_configure_tagged(role: str) -> None:
    tasks = yaml.safe_load((ROLES / role / "tasks" / "main.yml").read_text())
    files = [t["ansible.builtin.include_tasks"]["file"] for t in tasks]
    assert files == ["preflight.yml", "install.yml", "configure.yml"]
    assert tasks[1]["tags"] == [f"{role}_install"]
    assert tasks[2]["tags"] == [f"{role}_configure"]


# --- the command ----------------------------------------------------------------------------


def test_cli_refuses_an_unknown_system_with_exit_2(estate_copy: Any, tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["--estate", str(estate_copy.root), "--state",
                                    str(tmp_path / "state"), "configure", "--system", "nope"])
    assert done.exit_code == 2
    assert "no system 'nope'" in done.output


def test_cli_prints_the_run_as_json_and_exits_3_when_some_hosts_failed(
        paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeRunner(run_of({"qlvb-db-01": host("qlvb-db-01", ok=40),
                              "repo-qnam-01": host("repo-qnam-01", unreachable=1)}, "failed", 4))
    monkeypatch.setattr(configure_action, "_probe", answering)
    monkeypatch.setattr(configure_action, "run_playbook", fake)
    done = CliRunner().invoke(app, ["--estate", str(paths.estate.root), "--state",
                                    str(paths.state), "configure", "--system", "qlvb", "--json"])
    assert done.exit_code == 3, done.output
    document = json.loads(done.stdout)
    assert document["status"] == "partial"
    assert document["unreachable_hosts"] == ["repo-qnam-01"]
    assert document["hosts"]["qlvb-db-01"]["status"] == "ok"
    assert document["plan"]["limit"] == "system_qlvb,repo-qnam-01"


def test_cli_summary_shows_notices(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    notice = Notice("qlvb-db-01", "backup_schedule", "T", "hopnhat-backup-qlvb.timer was "
                    "installed and validated but NOT enabled")
    fake = FakeRunner(run_of({"qlvb-db-01": host("qlvb-db-01", ok=40)}, notices=(notice,)))
    monkeypatch.setattr(configure_action, "_probe", answering)
    monkeypatch.setattr(configure_action, "run_playbook", fake)
    done = CliRunner().invoke(app, ["--estate", str(paths.estate.root), "--state",
                                    str(paths.state), "configure", "--system", "qlvb"])
    assert done.exit_code == 0, done.output
    assert "NOT enabled" in done.output
    assert "configure ok" in done.output


def test_plan_is_data() -> None:
    the_plan = ConfigurePlan("danang", ("qlvb",), "system_qlvb", ("qlvb-db-01",), False, False, 5)
    assert the_plan.as_dict()["hosts"] == ["qlvb-db-01"]


# --- waiting for hosts to accept SSH ------------------------------------------------------


def inventory_of(**ports: int) -> dict[str, Any]:
    return {"_meta": {"hostvars": {name: {"ansible_host": "127.0.0.1", "ansible_port": port}
                                   for name, port in ports.items()}}}


def test_a_host_whose_sshd_comes_up_late_is_waited_for_and_a_silent_one_is_returned() -> None:
    late, never = free_port(), free_port()
    listening = threading.Event()

    def listen_later() -> None:
        time.sleep(0.6)
        with socket.create_server(("127.0.0.1", late)) as server:
            listening.set()
            server.settimeout(5)
            for _ in range(2):  # the first probe, then any retry
                try:
                    server.accept()[0].close()
                except TimeoutError:
                    return

    threading.Thread(target=listen_later, daemon=True).start()
    waited: list[tuple[tuple[str, ...], float]] = []
    start = time.monotonic()
    silent = wait_for_hosts(inventory_of(web=late, db=never), ("web", "db"), 2.0,
                            on_wait=lambda hosts, timeout: waited.append((hosts, timeout)))
    took = time.monotonic() - start
    assert listening.is_set()
    assert silent == ("db",)
    assert waited == [(("web", "db"), 2.0)]
    assert 1.9 <= took < 10.0  # waited out the timeout for the silent host, no longer


def test_hosts_that_answer_at_once_are_not_waited_for() -> None:
    waited: list[tuple[tuple[str, ...], float]] = []
    assert wait_for_hosts(inventory_of(a=1, b=2), ("a", "b"), 60.0,
                          on_wait=lambda hosts, timeout: waited.append((hosts, timeout)),
                          probe=answering) == ()
    assert waited == []


def test_with_no_wait_the_hosts_are_tried_once() -> None:
    tries: list[tuple[str, int, float]] = []

    def refused(address: str, port: int, timeout: float) -> bool:
        tries.append((address, port, timeout))
        return False

    assert wait_for_hosts(inventory_of(a=22), ("a",), 0.0, probe=refused) == ("a",)
    assert tries == [("127.0.0.1", 22, 0.0)]


def test_configure_waits_as_long_as_the_estate_says_for_a_host_that_comes_up_late(
        paths: Paths) -> None:
    db = str(next(vm.ip for vm in paths.estate.vms if vm.name == "qlvb-db-01"))
    tries: list[str] = []

    def db_answers_at_its_second_try(address: str, port: int, timeout: float) -> bool:
        tries.append(address)
        return address != db or tries.count(db) > 1

    waited: list[tuple[tuple[str, ...], float]] = []
    fake = FakeRunner(run_of({"qlvb-db-01": host("qlvb-db-01", ok=3)}))
    with Ledger(paths.ledger) as ledger:
        result = configure(paths, plan(paths.estate, ["qlvb"]), ledger=ledger,
                           runner=fake, probe=db_answers_at_its_second_try,
                           on_wait=lambda h, t: waited.append((h, t)))
    assert waited == [(("qlvb-db-01",), 120.0)]  # configuration.connect_wait: 2m by default
    assert tries.count(db) == 2 and result.exit_code == 0


def test_configure_runs_ansible_for_a_host_that_never_answers_and_records_it(
        paths: Paths) -> None:
    fake = FakeRunner(run_of({"qlvb-db-01": host("qlvb-db-01", unreachable=1)}, "failed", 4))
    db = str(next(vm.ip for vm in paths.estate.vms if vm.name == "qlvb-db-01"))
    with Ledger(paths.ledger) as ledger:
        start = time.monotonic()
        result = configure(paths, plan(paths.estate, ["qlvb"]), ledger=ledger, runner=fake,
                           connect_wait=0.5, probe=lambda address, port, t: address != db)
        assert time.monotonic() - start >= 0.5  # waited out connect_wait for it
        assert len(fake.calls) == 1  # Ansible still runs, and reports the host unreachable
        assert result.verdict.unreachable_hosts == ("qlvb-db-01",)
        assert [(e["subject"], e["waited_seconds"]) for e in ledger.events(result.run_id)
                if e["kind"] == "not-answering"] == [("qlvb-db-01", 0.5)]
