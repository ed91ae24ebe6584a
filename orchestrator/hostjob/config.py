"""The job's config file: JSON that the ``backup_schedule`` role renders from
``templates/hopnhat-backup.json.j2`` (no secret in it: the password stays in
``password_file``, which only restic reads), read and checked here before anything runs —
a bad config exits 2 naming the file and the key."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.adapters.restic import Repository
from orchestrator.errors import EXIT_BAD_INPUT, HopnhatError
from orchestrator.hostjob.contract import DUMPS_DIR

CONFIG_VERSION = 1
#: the PATH of the commands the job starts (pre-backup commands, sftp's df): nothing secret
#: of the job's own environment is passed on
COMMAND_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ConfigError(HopnhatError):
    """The job's config file is unreadable or invalid."""

    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True)
class RepositoryConfig:
    """A restic repository as the job reaches it: ``name`` (the repository host) and restic's
    ``url`` (``sftp:restic-<code>@<host>:/repo``, which the host's ssh config maps; or a rest
    server's URL without credentials, for messages). A rest repository also has
    ``location_file`` (its URL with the system's credentials, which restic reads with
    ``--repository-file``) and ``cacert`` (the CA its server is checked against)."""

    name: str
    url: str
    location_file: Path | None = None
    cacert: Path | None = None


@dataclass(frozen=True)
class DatabaseConfig:
    """One database the job dumps before the files backup (the estate's
    ``backup.databases``; :mod:`~orchestrator.hostjob.dumps` runs it). ``newest``: (table,
    column) of the newest record's time, or None; ``run_as``: the OS user of the engine's
    tools."""

    name: str
    engine: str
    database: str
    tables: tuple[str, ...] = ()
    newest: tuple[str, str] | None = None
    whole_cluster: bool = False
    run_as: str = "root"


@dataclass(frozen=True)
class JobConfig:
    """The job's config file (JSON, rendered by the ``backup_schedule`` role)."""

    system: str
    tier: int
    host: str
    paths: tuple[str, ...]
    repository: RepositoryConfig
    password_file: Path
    status_file: Path
    textfile: Path
    lock_file: Path
    exclude: tuple[str, ...] = ()
    pre_commands: tuple[str, ...] = ()
    databases: tuple[DatabaseConfig, ...] = ()
    #: where the dumps' manifests are written (and backed up with the files)
    dumps_dir: Path = Path(DUMPS_DIR)
    retention: Mapping[str, int] = field(default_factory=dict)
    copy: RepositoryConfig | None = None
    cache_dir: Path | None = None
    restic: str = "restic"
    lock_wait_seconds: float = 600.0
    timeout_seconds: float = 6 * 3600.0
    pre_command_timeout_seconds: float = 3600.0

    @property
    def tags(self) -> tuple[str, ...]:
        return (f"system={self.system}", f"tier={self.tier}", f"host={self.host}")

    def restic_repository(self, which: RepositoryConfig) -> Repository:
        return Repository(url=which.url, password_file=self.password_file,
                          cache_dir=self.cache_dir, name=f"{self.system}@{which.name}",
                          location_file=which.location_file, cacert=which.cacert)


_REQUIRED = ("version", "system", "tier", "host", "paths", "repository", "password_file",
             "status_file", "textfile", "lock_file")
_OPTIONAL = ("exclude", "pre_commands", "databases", "dumps_dir", "retention", "copy",
             "cache_dir", "restic",
             "lock_wait_seconds", "timeout_seconds", "pre_command_timeout_seconds")


def _strings(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: '{key}' must be a list of non-empty strings")
    return tuple(value)


def _repository(value: Any, key: str, where: str) -> RepositoryConfig:
    if (not isinstance(value, dict) or not {"name", "url"} <= set(value)
            or not set(value) <= {"name", "url", "location_file", "cacert"}
            or not all(isinstance(v, str) and v for v in value.values())):
        raise ConfigError(f"{where}: '{key}' must be {{name, url}} and, for a rest "
                          "repository, location_file and cacert (non-empty strings)")
    if ("location_file" in value) != ("cacert" in value):
        raise ConfigError(f"{where}: '{key}': location_file and cacert go together")
    return RepositoryConfig(
        name=value["name"], url=value["url"],
        location_file=_absolute(value, "location_file", f"{where}: '{key}'")
        if "location_file" in value else None,
        cacert=_absolute(value, "cacert", f"{where}: '{key}'") if "cacert" in value else None)


def _absolute(data: Mapping[str, Any], key: str, where: str) -> Path:
    value = data.get(key)
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(f"{where}: '{key}' must be an absolute path")
    return Path(value)


def _seconds(data: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}: '{key}' must be a positive number of seconds")
    return float(value)


def parse_config(data: Any, where: str = "config") -> JobConfig:
    """The config from its JSON data. Raises ConfigError naming ``where`` and the key."""
    _check_shape(data, where)
    paths = _strings(data, "paths", where)
    if not paths or not all(p.startswith("/") for p in paths):
        raise ConfigError(f"{where}: 'paths' must list at least one absolute path")
    copy = data.get("copy")
    cache_dir = data.get("cache_dir")
    restic = data.get("restic", "restic")
    if not isinstance(restic, str) or not restic:
        raise ConfigError(f"{where}: 'restic' must name the restic program")
    return JobConfig(
        system=data["system"], tier=data["tier"], host=data["host"], paths=paths,
        repository=_repository(data["repository"], "repository", where),
        password_file=_absolute(data, "password_file", where),
        status_file=_absolute(data, "status_file", where),
        textfile=_absolute(data, "textfile", where),
        lock_file=_absolute(data, "lock_file", where),
        exclude=_strings(data, "exclude", where),
        pre_commands=_pre_commands(data, where),
        databases=_databases(data.get("databases") or [], where),
        dumps_dir=_absolute(data, "dumps_dir", where) if "dumps_dir" in data
        else Path(DUMPS_DIR),
        retention=_retention(data, where),
        copy=None if copy is None else _repository(copy, "copy", where),
        cache_dir=None if cache_dir is None else _absolute(data, "cache_dir", where),
        restic=restic,
        lock_wait_seconds=_seconds(data, "lock_wait_seconds", where, 600.0),
        timeout_seconds=_seconds(data, "timeout_seconds", where, 6 * 3600.0),
        pre_command_timeout_seconds=_seconds(data, "pre_command_timeout_seconds", where,
                                             3600.0),
    )


def _check_shape(data: Any, where: str) -> None:
    """An object of the known keys, this job's config version, a system, host and tier."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the config must be a JSON object")
    missing = [k for k in _REQUIRED if k not in data]
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if missing or unknown:
        raise ConfigError(f"{where}: missing {missing or 'nothing'}, unknown {unknown or 'none'}")
    if data["version"] != CONFIG_VERSION:
        raise ConfigError(f"{where}: config version {data['version']!r}; this job reads "
                          f"version {CONFIG_VERSION}")
    for key in ("system", "host"):
        if not isinstance(data[key], str) or not data[key]:
            raise ConfigError(f"{where}: '{key}' must be a non-empty string")
    if isinstance(data["tier"], bool) or not isinstance(data["tier"], int):
        raise ConfigError(f"{where}: 'tier' must be a whole number")


def _pre_commands(data: dict[str, Any], where: str) -> tuple[str, ...]:
    """The commands run before the backup, each one that splits into arguments."""
    pre_commands = _strings(data, "pre_commands", where)
    for number, command in enumerate(pre_commands, 1):
        try:
            if not shlex.split(command):
                raise ValueError("empty")
        except ValueError as exc:
            raise ConfigError(f"{where}: pre_commands[{number}] cannot be split into "
                              f"arguments ({exc})") from None
    return pre_commands


# the estate's rules again (orchestrator/estate/databases.py), for a config written by hand:
# each value reaches an argv element or a quoted SQL identifier
_DUMP_NAME = re.compile(r"[a-z][a-z0-9_-]{0,30}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?")
_DATABASE = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]{0,63}")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_DATABASE_KEYS = {"name", "engine", "database", "all", "tables", "newest", "run_as"}


def _databases(value: Any, where: str) -> tuple[DatabaseConfig, ...]:
    """``databases``: a list of dumps, names unique."""
    if not isinstance(value, list):
        raise ConfigError(f"{where}: 'databases' must be a list")
    out = tuple(_database(item, f"{where}: databases[{i}]") for i, item in enumerate(value))
    names = [d.name for d in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: 'databases': a name is used twice")
    return out


def _word(data: dict[str, Any], key: str, pattern: re.Pattern[str], where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise ConfigError(f"{where}: '{key}' is missing or not a plain name")
    return value


def _database(data: Any, where: str) -> DatabaseConfig:
    if not isinstance(data, dict) or not {"name", "engine", "database"} <= set(data) \
            or not set(data) <= _DATABASE_KEYS:
        raise ConfigError(f"{where}: must be {{name, engine, database}} and optionally "
                          "all, tables, newest, run_as")
    engine = data["engine"]
    if engine not in ("postgresql", "mariadb", "sqlite"):
        raise ConfigError(f"{where}: 'engine' must be postgresql, mariadb or sqlite")
    if engine == "sqlite":
        database = _absolute(data, "database", where).as_posix()
    else:
        database = _word(data, "database", _DATABASE, where)
    tables = data.get("tables") or []
    if not isinstance(tables, list) or not all(
            isinstance(t, str) and _IDENTIFIER.fullmatch(t) for t in tables):
        raise ConfigError(f"{where}: 'tables' must list plain table names")
    newest = data.get("newest")
    if newest is not None:
        if not isinstance(newest, dict) or set(newest) != {"table", "column"}:
            raise ConfigError(f"{where}: 'newest' must be {{table, column}}")
        newest = (_word(newest, "table", _IDENTIFIER, where),
                  _word(newest, "column", _IDENTIFIER, where))
    whole = data.get("all", False)
    if not isinstance(whole, bool) or (whole and (engine != "postgresql" or tables or newest)):
        raise ConfigError(f"{where}: 'all' is true or false, true only for postgresql and "
                          "then without tables or newest")
    return DatabaseConfig(name=_word(data, "name", _DUMP_NAME, where), engine=engine,
                          database=database, tables=tuple(tables), newest=newest,
                          whole_cluster=whole,
                          run_as=_word(data, "run_as", _USER, where) if "run_as" in data
                          else ("postgres" if engine == "postgresql" else "root"))


def _retention(data: dict[str, Any], where: str) -> dict[str, int]:
    """keep-kind → count, the kinds kept at 0 left out."""
    retention = data.get("retention") or {}
    if not isinstance(retention, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0
            for v in retention.values()):
        raise ConfigError(f"{where}: 'retention' must map keep-kinds to whole numbers >= 0")
    return {str(k): int(v) for k, v in retention.items() if v > 0}


def load_config(path: Path) -> JobConfig:
    """Read and parse the config file. Raises ConfigError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON ({exc})") from None
    return parse_config(data, str(path))
