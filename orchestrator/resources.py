"""Where hopnhat's own files lie on disk: the ``orchestrator`` package, its Jinja2 templates
and its Ansible playbooks, found through :mod:`importlib.resources`.

The templates and playbooks are the project's top-level ``templates/`` and ``playbooks/``;
pyproject.toml maps them to the subpackages ``orchestrator.templates`` and
``orchestrator.playbooks`` (``package-dir``). A wheel holds them inside the package
(``site-packages/orchestrator/templates/``); the editable install that ``make`` makes maps
the same names to the checkout's folders. Either way the import system knows where they are,
and nothing here counts parent folders from a module's own path.

Jinja2's FileSystemLoader and ansible-runner need real folders: a package that is not one
(imported from a zip) is refused with a HopnhatError.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from orchestrator.errors import HopnhatError


def _folder(package: str) -> Path:
    found = resources.files(package)
    if not isinstance(found, Path) or not found.is_dir():
        raise HopnhatError(f"{package} is not a folder on disk ({found}): install hopnhat "
                           "from its wheel or its checkout, not from a zip")
    return found.resolve()


def package_dir() -> Path:
    """The ``orchestrator`` package's folder (what the backup_schedule role copies to the
    hosts, what a lab guest imports). Raises HopnhatError when it is no folder."""
    return _folder("orchestrator")


def package_parent() -> Path:
    """The folder holding the ``orchestrator`` package — the checkout, or the
    site-packages of an installed wheel: what a child Python needs on its PYTHONPATH to
    import the package."""
    return package_dir().parent


def templates_dir() -> Path:
    """The folder of hopnhat's Jinja2 templates (``templates/`` of the project). Raises
    HopnhatError when it is no folder."""
    return _folder("orchestrator.templates")


def playbooks_dir() -> Path:
    """The folder of hopnhat's Ansible playbooks and roles (``playbooks/`` of the project).
    Raises HopnhatError when it is no folder."""
    return _folder("orchestrator.playbooks")
