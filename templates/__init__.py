"""hopnhat's Jinja2 templates, shipped inside the package as ``orchestrator.templates``
(pyproject.toml's ``package-dir``) and found through :mod:`orchestrator.resources`.

This file only makes the folder a package that the editable install can map; it holds
no code."""
