"""Read the estate directory, validate every file, cross-check, derive the VMs.

Every problem is collected before anything is raised, so one run of
``hopnhat estate validate`` lists them all, each with its file and key path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from orchestrator.errors import EstateError
from orchestrator.estate.addressing import derive_vms
from orchestrator.estate.checks import Problems, cross_check
from orchestrator.estate.model import Estate, EstateFile, Site, System

M = TypeVar("M", bound=BaseModel)

_SECRET_WORDS = ("password", "secret", "token", "key")
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Unreadable:
    """What :func:`read_yaml` returns for a file it could not read or parse (already
    reported), so :func:`validate_file` does not report it a second time."""

    def __repr__(self) -> str:
        return "UNREADABLE"


UNREADABLE: Any = _Unreadable()


# libyaml's parser (C) when PyYAML has it: the estate is read by every command
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeLoader):  # type: ignore[misc]
    """SafeLoader that refuses a key written twice in one mapping (YAML allows it silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue  # ``<<: *anchor``: merged keys may be overridden, that is its purpose
        key = loader.construct_object(key_node, deep=deep)
        try:
            twice = key in seen
        except TypeError:
            continue  # unhashable key: construct_mapping reports it
        if twice:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is written twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def read_yaml(path: Path, rel: str, problems: Problems) -> Any:
    """Parse one YAML file; an unreadable or non-YAML file becomes a problem, not a crash,
    and :data:`UNREADABLE` is returned."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        problems.add(rel, "", f"cannot read the file: it is not UTF-8 text ({exc.reason} "
                     f"at byte {exc.start})")
        return UNREADABLE
    except OSError as exc:
        problems.add(rel, "", f"cannot read the file: {exc.strerror or exc.__class__.__name__}")
        return UNREADABLE
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        problems.add(rel, "", f"not valid YAML{where}: {reason}")
        return UNREADABLE


def key_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's location tuple → ``vms[1].network``."""
    out = ""
    for part in loc:
        if part == "[key]":
            continue  # a mapping key of the wrong type: the key itself is the last part
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(error: Any, path: str) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    secretish = any(word in path.lower() for word in _SECRET_WORDS)
    if kind != "value_error" and not secretish and isinstance(value, str | int | float | bool):
        shown = repr(value)
        if len(shown) <= 60:
            msg += f" (found {shown})"
    return msg


def validate_file(model: type[M], data: Any, rel: str, problems: Problems) -> M | None:
    """Validate ``data`` against ``model``; each pydantic error becomes a problem."""
    if data is UNREADABLE:
        return None
    if not isinstance(data, dict):
        problems.add(rel, "", "the file must hold a mapping of keys (found "
                     f"{type(data).__name__ if data is not None else 'nothing'})")
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if p not in ("function-before[_no_plain_text()]",))
            path = key_path(loc)
            problems.add(rel, path, _message(error, path))
        return None


def _yaml_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    # not only regular files: a folder or a dangling link named *.yml is reported, not skipped
    return sorted(p for p in folder.iterdir() if p.suffix in (".yml", ".yaml"))


def _declared(data: Any, key: str, path: Path) -> str:
    """The name an invalid file declares (else its file name), so that references to it
    are not reported as unknown on top of the file's own problems."""
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, str) else path.stem


def load_estate(root: Path | str) -> Estate:
    """Load and check the estate in ``root``.

    Returns the :class:`Estate`; raises :class:`EstateError` holding every problem found
    (file relative to ``root``, key path, message). Reads files only; changes nothing.
    """
    base = Path(root)
    problems = Problems()
    if not base.is_dir():
        raise EstateError([(str(base), "", "the estate directory does not exist")])

    settings: EstateFile | None = None
    estate_path = base / "estate.yml"
    if not estate_path.exists() and not estate_path.is_symlink():
        problems.add("estate.yml", "", "missing: the estate directory needs an estate.yml")
    else:
        settings = validate_file(
            EstateFile, read_yaml(estate_path, "estate.yml", problems), "estate.yml", problems
        )

    files: dict[str, str] = {}
    sites: dict[str, Site] = {}
    invalid_sites: set[str] = set()
    for path in _yaml_files(base / "sites"):
        rel = f"sites/{path.name}"
        data = read_yaml(path, rel, problems)
        site = validate_file(Site, data, rel, problems)
        if site is None:
            invalid_sites.add(_declared(data, "name", path))
            continue
        if site.name in sites:
            problems.add(rel, "name", f"site {site.name!r} is also declared in "
                         f"{files['site:' + site.name]}")
            continue
        sites[site.name] = site
        files[f"site:{site.name}"] = rel
    if not (base / "sites").is_dir():
        problems.add("sites/", "", "missing: the estate needs a sites/ folder, one file a site")

    systems: dict[str, System] = {}
    invalid_systems: set[str] = set()
    for path in _yaml_files(base / "systems"):
        rel = f"systems/{path.name}"
        data = read_yaml(path, rel, problems)
        system = validate_file(System, data, rel, problems)
        if system is None:
            invalid_systems.add(_declared(data, "code", path))
            continue
        if system.code in systems:
            problems.add(rel, "code", f"system code {system.code!r} is also used by "
                         f"{files['system:' + system.code]}")
            continue
        systems[system.code] = system
        files[f"system:{system.code}"] = rel

    # cross-checks run even when estate.yml is invalid, so one run lists every problem;
    # references to what an invalid file declares are not reported again
    cross_check(settings, sites, systems, files, problems,
                invalid_sites=invalid_sites, invalid_systems=invalid_systems)
    vms, targets = derive_vms(settings, sites, systems, files, problems)
    if problems:
        raise EstateError(problems.items)
    assert settings is not None
    return Estate(
        root=str(base.resolve()), settings=settings, sites=sites, systems=systems,
        vms=vms, files=files, targets=targets,
    )
