"""``hopnhat maintain``: the control host prunes the repositories its clients cannot.

Clients of a rest repository host only add (their rest-server is append-only); this pass,
run from the control host through each host's maintenance endpoint (its own credentials, on
no client), applies each system's retention as ``--keep-within-*`` rules, prunes, and
records in the ledger every snapshot it removed — so ``verify`` can tell hopnhat's removals
from anyone else's. :mod:`.plan` decides what runs (pure), :mod:`.run` runs it, :mod:`.flow`
is the command from end to end (what every such pass shares: :mod:`orchestrator.actions.passes`).
"""
