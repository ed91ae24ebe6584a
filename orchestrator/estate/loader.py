"""Read the estate directory, validate every file, cross-check, derive the VMs.

Every problem is collected before anything is raised, so one run of
``hopnhat estate validate`` lists them all, each with its file and key path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from orchestrator.errors import CommandError, EstateError
from orchestrator.estate.addressing import derive_vms
from orchestrator.estate.checks import Problems, cross_check
from orchestrator.estate.model import Estate, EstateFile, Site, System
from orchestrator.estate.values import (
    CalendarCheck,
    check_calendars,
    control_characters,
    huge_numbers,
)
from orchestrator.quoting import CONTROL, terminal

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
    if not isinstance(node, yaml.MappingNode):  # !!map on a list: construct_mapping says so
        return loader.construct_mapping(node, deep=deep)
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue  # ``<<: *anchor``: merged keys may be overridden, that is its purpose
        key = loader.construct_object(key_node, deep=deep)
        try:
            twice = key in seen
            seen.add(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"a {type(key).__name__} cannot be a key", key_node.start_mark
            ) from None
        if twice:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {terminal(repr(key), 80)} is written twice",
                key_node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


#: the most an estate file may hold: estate files are a few KiB; a bigger one is a mistake
#: (or a link to something that is not an estate file)
MAX_FILE_BYTES = 1 << 20


def _read_text(path: Path, root: Path, rel: str, problems: Problems) -> str | None:
    """The text of estate file ``path``: a regular file inside ``root`` (a link is followed
    only to a regular file inside ``root``), at most :data:`MAX_FILE_BYTES`. Anything else
    (a folder, a pipe, a device, a link out of the estate, a huge file) is one problem,
    and nothing of it is read."""
    try:
        target = path.resolve(strict=True)  # through links, the file's and its folders'
        if not target.is_relative_to(root.resolve()):
            problems.add(rel, "", "a link to a file outside the estate folder: hopnhat "
                         "reads only the estate's own files")
            return None
        path = target
        # O_NONBLOCK: opening a named pipe must not wait for a writer; O_NOFOLLOW: the path
        # checked above is the file opened
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
                     | os.O_NOCTTY)
    except OSError as exc:
        problems.add(rel, "", f"cannot read the file: {exc.strerror or exc.__class__.__name__}")
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else \
                "a named pipe" if stat.S_ISFIFO(info.st_mode) else \
                "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else \
                "a socket" if stat.S_ISSOCK(info.st_mode) else "not a file"
            problems.add(rel, "", f"not a regular file ({kind}): an estate file is YAML text")
            return None
        data = os.read(fd, MAX_FILE_BYTES + 1)
        while 0 < len(data) <= MAX_FILE_BYTES:
            more = os.read(fd, MAX_FILE_BYTES + 1 - len(data))
            if not more:
                break
            data += more
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        problems.add(rel, "", f"the file is larger than {MAX_FILE_BYTES // 1024} KiB: not an "
                     "estate file")
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.add(rel, "", f"cannot read the file: it is not UTF-8 text ({exc.reason} "
                     f"at byte {exc.start})")
        return None


#: the most values (mappings, lists, scalars) a file may hold with its aliases expanded: the
#: example's largest file holds ~200; a few aliases can make billions ("billion laughs")
MAX_NODES = 100_000


#: the deepest an estate file nests (the example: 6)
MAX_DEPTH = 40


def _expanded_size(data: Any, seen: dict[int, int], depth: int = 0) -> int:
    """How many values ``data`` holds with every alias expanded, counted once per object
    (so in time linear in the file, however often an alias repeats); past
    :data:`MAX_DEPTH` levels, more than :data:`MAX_NODES`."""
    if not isinstance(data, dict | list):
        return 1
    if depth > MAX_DEPTH:
        return MAX_NODES + 1
    known = seen.get(id(data))
    if known is not None:
        return known
    seen[id(data)] = MAX_NODES + 1  # a cycle (an alias inside its own anchor) is too big
    items = [*data.keys(), *data.values()] if isinstance(data, dict) else data
    total = 1
    for item in items:
        total += _expanded_size(item, seen, depth + 1)
        if total > MAX_NODES:
            break
    seen[id(data)] = total
    return total


def read_yaml(path: Path, rel: str, problems: Problems, root: Path | None = None) -> Any:
    """Parse one YAML file of the estate folder ``root`` (default: the file's folder); an
    unreadable or non-YAML file, or one holding a control character, becomes a problem, not
    a crash, and :data:`UNREADABLE` is returned (see :func:`_read_text` for what is read)."""
    text = _read_text(path, path.parent if root is None else root, rel, problems)
    if text is None:
        return UNREADABLE
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        problems.add(rel, "", f"not valid YAML{where}: {reason}")
        return UNREADABLE
    except RecursionError:
        problems.add(rel, "", "not valid YAML: nested too deeply")
        return UNREADABLE
    except Exception as exc:
        # float(), datetime() raise on values they cannot build (!!int abc, 2024-02-30)
        problems.add(rel, "", f"not valid YAML: a value it cannot build "
                     f"({type(exc).__name__}: {terminal(str(exc), 120)})")
        return UNREADABLE
    if _expanded_size(data, {}) > MAX_NODES:
        problems.add(rel, "", f"the file nests deeper than {MAX_DEPTH} levels or holds more "
                     f"than {MAX_NODES} values once its aliases (*name) are expanded: not "
                     "an estate file")
        return UNREADABLE
    huge = list(huge_numbers(data))
    for key, message in huge:
        problems.add(rel, key, message)
    if huge:
        return UNREADABLE
    controlled = list(control_characters(data))
    for key, message in controlled:
        problems.add(rel, key, message)
    # reported: the rest of the file is still checked, without them (one problem each)
    return _without_control(data) if controlled else data


def _without_control(data: Any) -> Any:
    """``data`` less its control characters, and less the keys that hold one."""
    if isinstance(data, dict):
        return {k: _without_control(v) for k, v in data.items()
                if not (isinstance(k, str) and CONTROL.search(k))}
    if isinstance(data, list):
        return [_without_control(v) for v in data]
    if isinstance(data, str):
        return CONTROL.sub("", data)
    return data


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


def _check_schedules(settings: EstateFile | None, systems: dict[str, System],
                     files: dict[str, str], problems: Problems, calendar: CalendarCheck) -> None:
    """Every schedule of the estate, judged at once (one ``systemd-analyze`` for all)."""
    where: list[tuple[str, str, str]] = []
    if settings is not None and settings.vault is not None:
        where.append(("estate.yml", "vault.schedule", settings.vault.schedule))
    for code, system in systems.items():
        if system.backup is not None:
            where.append((files[f"system:{code}"], "backup.schedule", system.backup.schedule))
    if not where:
        return
    expressions = [expression for _, _, expression in where]
    try:
        found = calendar(expressions)
    except CommandError:  # its program is missing or did not answer: hopnhat's reading
        found = check_calendars(expressions)
    for rel, key, expression in where:
        if expression in found:
            problems.add(rel, key, found[expression])


def load_estate(root: Path | str, *, calendar: CalendarCheck = check_calendars) -> Estate:
    """Load and check the estate in ``root``; ``calendar`` judges its schedules (default:
    hopnhat's own reading of systemd's grammar; the CLI passes systemd's own,
    :func:`orchestrator.adapters.systemd.calendar_problems`: where it raises CommandError,
    systemd-analyze being missing, hopnhat's own reading stands in).

    Returns the :class:`Estate`; raises :class:`EstateError` holding every problem found
    (file relative to ``root``, key path, message). Reads files only; changes nothing.
    """
    base = Path(root)
    problems = Problems()
    if not base.is_dir():
        raise EstateError([(terminal(str(base), 200), "", "the estate directory does not exist"
                            if not base.exists() else "not a folder: the estate is a folder "
                            "(estate.yml, sites/, systems/)")])

    settings = _read_settings(base, problems)
    files: dict[str, str] = {}
    sites, invalid_sites = _read_declared(base, Site, "name", "site {!r} is also declared in {}",
                                          files, problems)
    if not (base / "sites").is_dir():
        problems.add("sites/", "", "missing: the estate needs a sites/ folder, one file a site")
    systems, invalid_systems = _read_declared(base, System, "code",
                                              "system code {!r} is also used by {}", files,
                                              problems)

    # cross-checks run even when estate.yml is invalid, so one run lists every problem;
    # references to what an invalid file declares are not reported again
    cross_check(settings, sites, systems, files, problems,
                invalid_sites=invalid_sites, invalid_systems=invalid_systems)
    vms, targets = derive_vms(settings, sites, systems, files, problems)
    _check_schedules(settings, systems, files, problems, calendar)
    if problems:
        raise EstateError(problems.items)
    assert settings is not None
    return Estate(
        root=str(base.resolve()), settings=settings, sites=sites, systems=systems,
        vms=vms, files=files, targets=targets,
    )


def _read_settings(base: Path, problems: Problems) -> EstateFile | None:
    """``estate.yml``, validated (None, with problems, when missing or invalid)."""
    estate_path = base / "estate.yml"
    if not estate_path.exists() and not estate_path.is_symlink():
        problems.add("estate.yml", "", "missing: the estate directory needs an estate.yml")
        return None
    return validate_file(
        EstateFile, read_yaml(estate_path, "estate.yml", problems, base), "estate.yml", problems
    )


_Declared = TypeVar("_Declared", Site, System)


def _read_declared(base: Path, model: type[_Declared], key: str, twice: str,
                   files: dict[str, str], problems: Problems
                   ) -> tuple[dict[str, _Declared], set[str]]:
    """The sites (``model`` Site, ``key`` name) or systems (System, code) of their folder,
    one a file, by ``key``: each recorded in ``files`` as ``site:<name>`` or
    ``system:<code>``; one declared again is a problem (``twice``: its message, given the
    key and the first file). Out: them, and the keys the invalid files declare."""
    kind = model.__name__.lower()
    found: dict[str, _Declared] = {}
    invalid: set[str] = set()
    for path in _yaml_files(base / f"{kind}s"):
        rel = f"{kind}s/{path.name}"
        data = read_yaml(path, rel, problems, base)
        declared = validate_file(model, data, rel, problems)
        if declared is None:
            invalid.add(_declared(data, key, path))
            continue
        name = str(getattr(declared, key))
        if name in found:
            problems.add(rel, key, twice.format(name, files[f"{kind}:{name}"]))
            continue
        found[name] = declared
        files[f"{kind}:{name}"] = rel
    return found, invalid
