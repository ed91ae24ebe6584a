"""The ``hopnhat`` command: thin Typer apps, one module per command group."""

from orchestrator.cli.app import app, main

__all__ = ["app", "main"]
