"""hopnhat's Ansible playbooks and roles, shipped inside the package as
``orchestrator.playbooks`` (pyproject.toml's ``package-dir``) and found through
:mod:`orchestrator.resources`.

This file only makes the folder a package that the editable install can map; it holds
no code. Ansible ignores it."""
