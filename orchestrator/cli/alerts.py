"""``hopnhat alerts --print | --output FILE``: the Prometheus alert rules for hopnhat's
metrics (:mod:`orchestrator.reports.alerts`). Needs no estate: the rules read the RPO and the
labels from the metrics themselves. Exit 0 printed or written, 2 nothing asked for, a bad
threshold or a file that cannot be written."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from orchestrator.cli.common import JsonOption, console, print_json, want_json
from orchestrator.errors import EXIT_BAD_INPUT, HopnhatError


def _duration(value: str) -> timedelta:
    from orchestrator.estate.model import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _percent(value: float) -> float:
    if not 0 < value <= 100:
        raise typer.BadParameter(f"{value:g} is not a percentage above 0 and at most 100")
    return value


def alerts(
    ctx: typer.Context,
    print_rules: Annotated[bool, typer.Option(
        "--print", help="Print the rule file (YAML; JSON with --json) on stdout.")] = False,
    output: Annotated[Path | None, typer.Option(
        "--output", help="Write the rule file here, replacing it in one rename (e.g. "
        "/etc/prometheus/rules/hopnhat.yml).")] = None,
    verify_max_age: Annotated[str, typer.Option(
        "--verify-max-age", help="Warn when the last verification is older than this.")
    ] = "26h",
    maintain_max_age: Annotated[str, typer.Option(
        "--maintain-max-age", help="Warn when a repository's last successful maintenance "
        "is older than this.")] = "8d",
    drill_max_age: Annotated[str, typer.Option(
        "--drill-max-age", help="Warn when the nightly drills last ran longer ago than "
        "this.")] = "26h",
    quota_percent: Annotated[float, typer.Option(
        "--quota-percent", callback=_percent, help="Warn when a repository uses more of "
        "its quota than this (percent).")] = 90.0,
    json: JsonOption = False,
) -> None:
    """Prometheus alert rules for hopnhat's metrics: the nightly verification (damage,
    RPO exceeded, second copy, stale locks, not run), attack signs (snapshots dated in the
    future, from a foreign host, or vanished outside the retention applied), each host's
    backup job, the maintenance pass, each system's quota and the drills (a system's last
    drill failed, a system overdue, the nightly drills not run or not all). Each rule
    carries a severity label (critical or warning) and its summary and description in
    Vietnamese (summary, description) and English (summary_en, description_en).

    To install: write the file where Prometheus reads rules, list it under rule_files in
    prometheus.yml, check it with promtool and reload Prometheus:

      hopnhat alerts --output /etc/prometheus/rules/hopnhat.yml
      # prometheus.yml:  rule_files: ["/etc/prometheus/rules/*.yml"]
      promtool check config /etc/prometheus/prometheus.yml
      systemctl reload prometheus

    Alertmanager routes the alerts by their severity label."""
    from orchestrator.reports import write_report
    from orchestrator.reports.alerts import alert_groups, render_rules, rules_document

    if not print_rules and output is None:
        raise HopnhatError("nothing to do: --print shows the rules, --output FILE writes "
                           "them (then list FILE under rule_files in prometheus.yml)",
                           exit_code=EXIT_BAD_INPUT)
    try:
        groups = alert_groups(verify_max_age=_duration(verify_max_age),
                              maintain_max_age=_duration(maintain_max_age),
                              drill_max_age=_duration(drill_max_age),
                              quota_percent=quota_percent)
    except ValueError as exc:
        raise HopnhatError(str(exc), exit_code=EXIT_BAD_INPUT) from None
    text = render_rules(groups)
    as_json = want_json(ctx, json)
    if output is not None:
        try:
            write_report(output, text)
        except OSError as exc:
            raise HopnhatError(f"--output {output}: cannot write it ({exc.strerror})",
                               exit_code=EXIT_BAD_INPUT) from None
    if print_rules:
        if as_json:
            print_json(rules_document(groups))
        else:
            typer.echo(text, nl=False)
        return
    rules = sum(len(group.rules) for group in groups)
    if as_json:
        print_json({"output": str(output), "groups": len(groups), "rules": rules})
        return
    console.print(f"wrote {rules} alert rules in {len(groups)} groups to "
                  f"{escape(str(output))}: list it under rule_files in prometheus.yml, check "
                  "it with `promtool check rules`, reload Prometheus", soft_wrap=True)
