#!/usr/bin/env python3
"""Ansible dynamic inventory: the hosts of the estate, derived by hopnhat.

    ansible-playbook -i playbooks/inventory.py playbooks/site.yml

Reads $HOPNHAT_ESTATE (default ./inventory) and $HOPNHAT_STATE (default ./.hopnhat), like
`hopnhat estate inventory`, which it runs. Works for AWX as an inventory script too.
"""

import os
import sys
from pathlib import Path

try:
    from orchestrator.cli import app
except ImportError:  # not inside hopnhat's virtualenv: use the project's, if there is one
    venv_python = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python"
    if venv_python.exists() and Path(sys.executable) != venv_python:
        os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])
    raise

if __name__ == "__main__":
    args = sys.argv[1:] or ["--list"]
    sys.exit(app(["estate", "inventory", *args], standalone_mode=True))
