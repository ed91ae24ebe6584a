"""The Grafana dashboard (``docs/grafana/hopnhat.json``) reads only what hopnhat writes: every
PromQL query of its panels and variables names metrics that some textfile writer of hopnhat
actually renders (:mod:`tests.unit.reports.textfiles`: the real writers fed with realistic
results — no list kept by hand), and so do the alert rules (``hopnhat alerts``). A metric
renamed in a writer and not in the dashboard fails here, as a query naming a metric nobody
writes would show an empty panel in Grafana.

The metric names of a query come from a small PromQL reader (:func:`metric_names`): string
literals, label matchers, label lists (``by``/``without``/``on``/``ignoring``/
``group_left``/``group_right``), ranges, offsets, numbers and Grafana's variables are set
aside; what remains is an identifier that is not a keyword and not a function or
aggregation (followed by ``(``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.reports.alerts import alert_groups
from tests.helpers import REPO
from tests.unit.reports.textfiles import written

DASHBOARD = REPO / "docs" / "grafana" / "hopnhat.json"

# --- a PromQL reader ------------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_VARIABLE = re.compile(r"\$(?:\{[^}]*\}|\[\[[^\]]*\]\]|\w+)")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_OFFSET = re.compile(r"\boffset\s+-?[\w.]+|@\s*[\d.]+")
_NUMBER = re.compile(r"(?<![\w:])(?:0x[0-9a-fA-F]+|\d[\w.]*(?:[eE][+-]?\d+)?)")
_IDENTIFIER = re.compile(r"(?<![\w:])([A-Za-z_:][\w:]*)(?![\w:]|\s*\()")
#: words of PromQL that are not metrics where no '(' follows them
KEYWORDS = frozenset({"and", "or", "unless", "bool", "by", "without", "on", "ignoring",
                      "group_left", "group_right", "offset", "atan2", "inf", "nan"})
#: Grafana's query functions of a Prometheus variable: label_values(<selector>, <label>),
#: query_result(<query>)
_LABEL_VALUES = re.compile(r"^\s*label_values\s*\((?:(.*),)?\s*\w+\s*\)\s*$", re.S)
_QUERY_RESULT = re.compile(r"^\s*query_result\s*\((.*)\)\s*$", re.S)


def metric_names(query: str) -> set[str]:
    """The metric names ``query`` (PromQL) selects."""
    text = _STRING.sub(" ", query)
    text = _VARIABLE.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in KEYWORDS}


def variable_query(query: str) -> str:
    """The PromQL of a Grafana variable's query (what ``label_values`` or ``query_result``
    holds; empty for ``label_values(<label>)``, which names no metric)."""
    if (found := _LABEL_VALUES.match(query)) is not None:
        return found.group(1) or ""
    if (found := _QUERY_RESULT.match(query)) is not None:
        return found.group(1)
    return query


@pytest.mark.parametrize(("query", "names"), [
    ("hopnhat_verify_ok", {"hopnhat_verify_ok"}),
    ('sum by (system, host) (rate(node_cpu_seconds_total{mode!="idle",cpu=~"0|1"}[5m]))',
     {"node_cpu_seconds_total"}),
    ("time() - max by (system) (hopnhat_backup_last_snapshot_timestamp_seconds"
     '{system=~"$system"}) / on (system) group_left (tier) hopnhat_backup_rpo_seconds',
     {"hopnhat_backup_last_snapshot_timestamp_seconds", "hopnhat_backup_rpo_seconds"}),
    ("max(a_gauge) without (instance) > bool 0.5 and on() b_gauge offset 1h unless c",
     {"a_gauge", "b_gauge", "c"}),
    ('topk(3, x{job="by (system) and or"}) * 1e3 + 0x1F - y[$__rate_interval:1m] @ 1700000000',
     {"x", "y"}),
    ('{__name__="only_by_name"}', set()),
    ("sum (rate(http_requests_total[${__range}]))", {"http_requests_total"}),
    ("label_replace(up, \"dst\", \"$1\", \"src\", \"(.*)\")", {"up"}),
    ("namespace:requests:rate5m > 0", {"namespace:requests:rate5m"}),
])
def test_the_promql_reader_names_the_metrics_and_nothing_else(query: str,
                                                              names: set[str]) -> None:
    assert metric_names(query) == names


@pytest.mark.parametrize(("query", "promql"), [
    ("label_values(hopnhat_backup_rpo_seconds, system)", "hopnhat_backup_rpo_seconds"),
    ('label_values(hopnhat_verify_ok{tier="1"}, system)', 'hopnhat_verify_ok{tier="1"}'),
    ("label_values(system)", ""),
    ("query_result(max by (system) (hopnhat_verify_ok))", "max by (system) (hopnhat_verify_ok)"),
])
def test_a_variables_query_is_read_for_its_promql(query: str, promql: str) -> None:
    assert variable_query(query) == promql


# --- the dashboard --------------------------------------------------------------------------

def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # a collapsed row holds its panels


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel's target and every variable of ``board``."""
    for panel in _panels(board["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            yield f"variable {variable['name']!r}", variable_query(text)


def written_metrics() -> set[str]:
    """Every metric some textfile writer of hopnhat renders."""
    return {family.name for each in written()
            for family in text_string_to_metric_families(each.text)}


def unknown(named: Iterator[tuple[str, str]], known: set[str]) -> dict[str, set[str]]:
    """where → the metrics its query names that are not ``known``."""
    found = {where: metric_names(query) - known for where, query in named}
    return {where: names for where, names in found.items() if names}


def test_the_dashboard_is_a_grafana_dashboard_to_import() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    [source] = board["__inputs"]
    assert (source["type"], source["pluginId"]) == ("datasource", "prometheus")
    panels = list(_panels(board["panels"]))
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${" + source["name"] + "}"
            assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]


def test_every_query_of_the_dashboard_is_promql_that_prometheus_reads(tmp_path: Path) -> None:
    """Each query as the expression of a recording rule, checked by ``promtool check
    rules`` (Grafana's ``$variables`` stand in label matchers' strings, which PromQL reads
    as they are)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: install Debian's prometheus package "
                    "(apt-get install --no-install-recommends prometheus; make test does)")
    rules = [{"record": f"hopnhat:dashboard_query:{i}", "expr": query}
             for i, (_, query) in enumerate(queries(dashboard())) if query]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_query_of_the_dashboard_names_only_metrics_hopnhat_writes() -> None:
    named = list(queries(dashboard()))
    assert len(named) > 20
    assert unknown(iter(named), written_metrics()) == {}


def test_the_check_names_a_metric_nobody_writes() -> None:
    """What the test above relies on: the name verify once wrote for its rotation's length
    is written by no writer now, and a query naming it is named."""
    queries = [("panel 'rotation' A", 'max by (system) (hopnhat_verify_read_data_subset_total'
                                      '{system=~"$system"})'),
               ("panel 'fine' A", "hopnhat_verify_read_data_subsets")]
    assert unknown(iter(queries), written_metrics()) == {
        "panel 'rotation' A": {"hopnhat_verify_read_data_subset_total"}}


def test_the_dashboard_shows_freshness_verification_drills_and_sizes() -> None:
    named = set().union(*(metric_names(q) for _, q in queries(dashboard())))
    assert {"hopnhat_backup_last_snapshot_timestamp_seconds", "hopnhat_backup_rpo_seconds",
            "hopnhat_verify_ok", "hopnhat_verify_check_ok",
            "hopnhat_drill_achieved_rpo_seconds", "hopnhat_drill_achieved_rto_seconds",
            "hopnhat_drill_last_success_timestamp_seconds",
            "hopnhat_repository_used_bytes", "hopnhat_backup_snapshot_bytes"} <= named


def test_every_alert_rule_names_only_metrics_hopnhat_writes() -> None:
    rules = [(f"alert {rule.alert}", rule.expr) for group in alert_groups()
             for rule in group.rules]
    assert unknown(iter(rules), written_metrics()) == {}
