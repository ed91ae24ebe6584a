"""The lab's link: which subnets sit behind it, and the exact nft and tc commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import LabError
from orchestrator.estate import load_estate
from orchestrator.lab import link
from tests.helpers import EXAMPLE_ESTATE


def test_the_secondary_sites_networks_are_behind_the_link() -> None:
    estate = load_estate(EXAMPLE_ESTATE)
    assert link.secondary_subnets(estate) == ["127.20.1.0/24", "127.20.2.0/24", "127.20.9.0/24"]


def test_a_cut_drops_both_directions_of_every_subnet() -> None:
    script = link.nft_cut_script("hopnhat_lab_ab12", ["127.20.1.0/24", "127.20.2.10/32"])
    assert script == (
        "table inet hopnhat_lab_ab12 {\n"
        "  chain output {\n"
        "    type filter hook output priority 0; policy accept;\n"
        "    ip daddr { 127.20.1.0/24, 127.20.2.10/32 } drop\n"
        "    ip saddr { 127.20.1.0/24, 127.20.2.10/32 } drop\n"
        "  }\n"
        "}\n")


def test_a_cut_without_a_secondary_network_or_with_a_bad_subnet_is_refused() -> None:
    with pytest.raises(LabError, match="no secondary site network"):
        link.nft_cut_script("t", [])
    with pytest.raises(ValueError):
        link.nft_cut_script("t", ["127.20.1.0/24 } ; flush ruleset ; {"])


def test_slow_puts_the_labs_own_class_and_filters_under_lo() -> None:
    argvs = link.tc_slow_argvs(0x2a, ["127.20.1.0/24"], "1gbit", None)
    assert argvs == [
        ["tc", "class", "replace", "dev", "lo", "parent", "1:", "classid", "1:2a", "htb",
         "rate", "1gbit", "ceil", "1gbit"],
        ["tc", "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "42",
         "u32", "match", "ip", "dst", "127.20.1.0/24", "flowid", "1:2a"],
        ["tc", "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "42",
         "u32", "match", "ip", "src", "127.20.1.0/24", "flowid", "1:2a"],
    ]
    delayed = link.tc_slow_argvs(0x2a, ["127.20.1.0/24"], "1gbit", "5ms")
    assert delayed[1] == ["tc", "qdisc", "replace", "dev", "lo", "parent", "1:2a", "handle",
                          "2a:", "netem", "delay", "5ms"]
    assert link.tc_unslow_argvs(0x2a) == [
        ["tc", "filter", "del", "dev", "lo", "parent", "1:", "prio", "42"],
        ["tc", "class", "del", "dev", "lo", "classid", "1:2a"]]


@pytest.mark.parametrize("rate", ["1gbit", "100mbit", "512kbit", "2.5gbit"])
def test_rates_tc_reads_are_taken(rate: str) -> None:
    assert link.check_rate(rate.upper()) == rate


@pytest.mark.parametrize("rate", ["", "fast", "1 gbit", "0mbit", "1gbps", "-1mbit",
                                  "1gbit;reboot"])
def test_other_rates_are_refused_with_exit_2(rate: str) -> None:
    with pytest.raises(LabError, match="--rate") as caught:
        link.check_rate(rate)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("latency", ["5ms", "20ms", "250us", "1s"])
def test_delays_tc_reads_are_taken(latency: str) -> None:
    assert link.check_latency(latency) == latency


@pytest.mark.parametrize("latency", ["5", "five ms", "5 ms", "-5ms", "5ms;x"])
def test_other_delays_are_refused(latency: str) -> None:
    with pytest.raises(LabError, match="--latency"):
        link.check_latency(latency)


def test_each_lab_has_its_own_class_and_table_name(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert link.lab_id(a) != link.lab_id(b)
    assert 2 <= link.class_minor(a) <= 4095
    assert link.class_minor(a) == link.class_minor(tmp_path / "a")


def test_a_link_never_touched_is_up_and_restore_has_nothing_to_do(tmp_path: Path) -> None:
    assert link.status(tmp_path)["state"] == "up"
    assert link.restore(tmp_path) is None
