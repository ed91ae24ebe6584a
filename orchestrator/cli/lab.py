"""``hopnhat lab``: the embedded lab of real parts (filled in below)."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="The embedded lab: vcsim, sshd guests, the "
                  "repository host — real parts on loopback. Needs root.")
