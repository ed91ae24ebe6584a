"""``hopnhat summary``: the morning summary of the estate — backups, the verifications and
drills of the last day, drills overdue — read from the ledger alone (no repository is
opened: fast, and safe to run every morning). Printed as text (``--json`` for machines),
written as an HTML page (``--html FILE``), sent to the channels the estate routes
``summary`` to (``--send``: e-mail gets the page with a text part). Exit 0 made (a channel
that could not be told is warned of, and in ``--json``), 2 bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from orchestrator.cli.common import (
    JsonOption,
    console,
    context,
    print_json,
    want_json,
    warn_unsent,
)


def _window(value: str) -> str:
    from orchestrator.estate.model import parse_duration

    try:
        if parse_duration(value).total_seconds() <= 0:
            raise ValueError("the window must be longer than zero")
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def summary(
    ctx: typer.Context,
    lang: Annotated[str, typer.Option(
        "--lang", help="Language of the summary: vi (default) or en.")] = "vi",
    since: Annotated[str, typer.Option(
        "--since", callback=_window, help="How far back the verifications and drills go "
        "(a duration: 24h, 2d).")] = "24h",
    html: Annotated[Path | None, typer.Option(
        "--html", help="Write the summary as an HTML page here.")] = None,
    send: Annotated[bool, typer.Option(
        "--send", help="Send it to the channels the estate's notifications.routes.summary "
        "names.")] = False,
    json: JsonOption = False,
) -> None:
    """The morning summary: each host's latest backup against its RPO (as the latest
    verification saw it, aged to now), the verifications and drills of the last day, and
    the drills overdue; times in the estate's time zone."""
    from orchestrator.actions.summary import send_summary, summarise
    from orchestrator.estate.model import parse_duration
    from orchestrator.ledger import Ledger
    from orchestrator.reports import write_report
    from orchestrator.reports.summary import labels, summary_html, summary_text

    labels(lang)  # a language other than vi or en: exit 2 before anything is read
    c = context(ctx)
    with Ledger(c.paths.ledger) as ledger:
        made = summarise(c.estate, ledger, window=parse_duration(since))
    doc = made.as_dict()
    if html is not None:
        write_report(html, summary_html(doc, lang))
    if send:
        sent = send_summary(c.paths, made, lang)
        doc["notifications"] = [s.as_dict() for s in sent]
        warn_unsent(sent)
    if want_json(ctx, json):
        print_json(doc)
    else:
        console.print(escape(summary_text(doc, lang)), end="", soft_wrap=True)
