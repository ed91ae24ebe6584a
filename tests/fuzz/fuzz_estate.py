"""A fuzzer of the estate loader and validator (issue 15, item 8).

The contract under test: every estate folder ends in a valid :class:`Estate` or an
:class:`~orchestrator.errors.EstateError` listing named problems (file, key, message) —
never another exception, never a hang, never memory past a bound.

Each example starts from the example estate (``inventory/``) and mutates it: values at any
key path replaced by hostile ones (other types, huge, negative, NaN and infinite numbers,
booleans, None, empty and very long strings, control characters and escape sequences,
unicode, ``..`` paths, nested lists and mappings) or by raw YAML (anchors and aliases, alias
and merge-key bombs, duplicate keys, tags such as ``!!python/object``, ``!!binary`` and
``!!timestamp``, dates), keys deleted or added, whole files dropped, duplicated or added
(non-YAML, non-UTF-8), files truncated, their bytes mutated.

Run it with ``make fuzz`` (``FUZZ_SECONDS`` seconds, 60 by default) or
``python tests/fuzz/fuzz_estate.py --seconds 60``. It runs in one process, with a bound on
each example's time (SIGALRM) and on the process's address space (RLIMIT_AS), and prints
every distinct failure with a minimal reproducer (the files that differ from the example);
each is saved in ``.hopnhat/fuzz/findings/``. Hypothesis' database is
``.hopnhat/fuzz/hypothesis``. The file name does not start with ``test_``: the normal
pytest run does not collect it; tests/unit/estate/test_estate_fuzz.py runs a small,
deterministic slice of these strategies.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import faulthandler
import math
import resource
import shutil
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import HypothesisWarning

PROJECT = Path(__file__).resolve().parents[2]
if str(PROJECT) not in sys.path:  # run as a script: the project is importable
    sys.path.insert(0, str(PROJECT))

from orchestrator.errors import EstateError  # noqa: E402
from orchestrator.estate import load_estate  # noqa: E402

EXAMPLE = PROJECT / "inventory"
WORK = PROJECT / ".hopnhat" / "fuzz"
#: per example: more than this is a hang
EXAMPLE_SECONDS = 3.0
#: the fuzz process's address space (RLIMIT_AS): past it, a MemoryError
MEMORY_BYTES = 2 * 1024**3

Files = dict[str, bytes | None]  # relative path → content; None: a folder of that name


def _example_files() -> Files:
    """The example estate as files (its vault left out: the loader does not read it, and
    it holds the lab's secrets)."""
    files: Files = {"sites/": None, "systems/": None}
    for path in sorted(EXAMPLE.rglob("*")):
        rel = path.relative_to(EXAMPLE).as_posix()
        if path.is_file() and rel != "secrets.vault.yml":
            files[rel] = path.read_bytes()
    return files


BASE: Files = _example_files()
#: the YAML files the loader reads, parsed (the base of the structural mutations)
DOCS: dict[str, Any] = {
    rel: yaml.safe_load(content.decode())
    for rel, content in BASE.items()
    if content is not None and rel != "lab.yml"
}


# ---------------------------------------------------------------------------------------
# hostile values


class Raw:
    """YAML text written as is in place of a value or key (one line, flow style)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:200]!r})"


def _alias_bomb(levels: int, width: int) -> str:
    parts = ["&l0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        parts.append(f"&l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "[" + ", ".join(parts) + "]"


def _merge_bomb(levels: int, width: int) -> str:
    parts = ["m0: &m0 {k: v}"]
    for i in range(1, levels):
        parts.append(f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * width) + "]}")
    return "{" + ", ".join(parts) + "}"


def _flow(value: Any) -> str:
    """``value`` in flow style on one line (a :class:`Raw` in it written as is)."""
    return _dump(value, flow=True, width=10**9).strip()


#: raw YAML, each family named: a family that crashes the loader today can be left out of
#: the deterministic slice (tests/unit/estate/test_estate_fuzz.py) until it is fixed
RAW_FAMILIES: dict[str, list[str]] = {
    "alias": [
        "&a [x, y]", "[&a x, *a, *a]", "*undefined", "&a", "{a: &b 1, c: *b}",
        "[&a {k: v}, *a]", "&r [*r]", "&r {a: *r}", "&r {<<: *r}", "{<<: 1}", "{<<: [1, 2]}",
        "{<<: {k: v}, k: w}", "{<<: [{a: 1}, {a: 2}]}",
    ],
    "tag": [
        "!!python/object:os.system {}", "!!python/name:os.system ''",
        "!!python/object/apply:os.system [true]", "!!python/tuple [1, 2]",
        "!!binary aGVsbG8=", '!!binary "not base64!"', "!!binary ü", "!!str 1", "!!null x",
        "!!set {a, b}", "!!omap [a, b]", "!!omap [{a: 1, b: 2}]", "!!pairs [x]",
        "!!map [1]", "!!seq {a: 1}", "!!merge x", "!!value x", "!custom x", "!<tag:x> 1",
        "!!str", "!!map {}",
    ],
    "scalar-tag": [
        "!!int abc", "!!int ''", "!!float abc", "!!bool maybe", "!!timestamp nonsense",
        "!!timestamp 2024-01-01", "!<tag:yaml.org,2002:int> 0x_",
    ],
    "date": [
        "2024-01-31", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.1234567891234",
        "!!timestamp 2024-02-30", "2024-02-30", "2024-13-01", "2024-01-01 25:00:00",
        "0000-01-01",
    ],
    "number": [
        "0x" + "f" * 4000, "0b" + "1" * 15000, "-0x1", "0o777", "0777", "1_000", "+.inf",
        ".NaN", "-.inf", "1e999", "-1e999", "0x_", "1:2:3", "190:20:30.15",
        ":".join(["59"] * 200), ":".join(["59"] * 2500),
    ],
    "huge-decimal": ["1" * 5000, "-" + "9" * 4400],
    "string": [
        '"\\x00"', '"\\e[2J\\e[H"', '"\\U0010FFFF"', '"\\u202e"', "'[/x]'", '"a\\nb"',
        '"' + "x" * 100_000 + '"', "~", "''", "|", ">", "- a", "? a", "a: b: c", "'", '"',
        "%YAML 1.1", "---", "...", "@x", "`x`", "{", "[", "]", "}", "{a: 1, a: 2}",
        "{? [a, b] : 1}", "{? {a: 1} : 1}", "{.inf: 1, .nan: 2, ~: 3, 2024-01-01: 4}",
        "[" * 500 + "]" * 500, "[" * 20000 + "]" * 20000, "{a: {b: {c: {d: {e: [1]}}}}}",
    ],
    "alias-bomb": [_alias_bomb(9, 10), _alias_bomb(3, 10), _alias_bomb(20, 3)],
    "merge-bomb": [_merge_bomb(3, 4), _merge_bomb(9, 10)],
}


def raw_values(families: frozenset[str]) -> st.SearchStrategy[Raw]:
    texts = [t for name, ts in RAW_FAMILIES.items() if name in families for t in ts]
    return st.sampled_from(texts).map(Raw)


_HOSTILE_TEXT = [
    "", " ", "\n", "\r\n", "\t", "\x00", "\x1b[2J\x1b[H", "\x1b]0;title\x07", "\x7f", "\u2028",
    "\u202e", "\ufeff", "..", "../..", "../../etc/passwd", "/..", "/srv/../etc", "/srv/\n",
    "a b", "-o ProxyCommand=touch /tmp/x", "$(id)", "`id`", "'", '"', "\\", "[/x]", "[bold]",
    "%s%n", "{vault: x}", "0s", "-1s", "1h", "25:00", "every night", "*-*-* 06:30:00",
    "127.0.0.1", "0.0.0.0/0", "256.1.1.1", "10.0.0.0/8", "10.0.0.1-10.0.0.0", "::1",
    "http://example.org", "https://", "danang", "quangnam", "qlvb", "repo-qnam-01",
    "Đà Nẵng", "汉字", "🙂", "x" * 81, "a" * 10_000, "UTC", "America", "Etc/../UTC",
    "leapseconds", "posixrules", "primary", "secondary", "rest", "sftp", "vault",
    "ssh", "srv", "db", "1", "1.5", "true", "null", "nan", ".inf",
]


def hostile_scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.booleans(),
        st.sampled_from([0, 1, -1, 2, 7, 65535, 65536, 2**31, 2**63, -(2**63) - 1, 10**30]),
        st.integers(),
        st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.5, 1e308, -1e-308]),
        st.floats(),
        st.sampled_from(_HOSTILE_TEXT),
        st.text(max_size=30),
        st.text(st.characters(codec="utf-8", categories=["Cc", "Cf", "Zl", "Zp", "Co"]),
                max_size=10),
        st.sampled_from([dt.date(2024, 1, 1), dt.datetime(2024, 1, 1, 12, 0, 0)]),
        st.binary(max_size=20),
    )


def hostile_values(families: frozenset[str]) -> st.SearchStrategy[Any]:
    scalars = hostile_scalars()
    nested = st.recursive(
        scalars, lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), st.none()), inner,
                            max_size=4)),
        max_leaves=12)
    leaves = _leaves()
    # a subtree of the example, copied: the mutations change what they are given in place
    options: list[st.SearchStrategy[Any]] = [scalars, nested, st.sampled_from(leaves),
                                             st.sampled_from(_subtrees()).map(copy.deepcopy)]
    if families:
        options.append(raw_values(families))
    return st.one_of(*options)


def _walk(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, (*path, i))


def _leaves() -> list[Any]:
    out: list[Any] = []
    for doc in DOCS.values():
        out += [v for _, v in _walk(doc) if not isinstance(v, dict | list)]
    return sorted(set(out), key=repr)


def _subtrees() -> list[Any]:
    out = []
    for doc in DOCS.values():
        out += [v for p, v in _walk(doc) if p and isinstance(v, dict | list)]
    return out


def _keys() -> list[Any]:
    out: set[Any] = set()
    for doc in DOCS.values():
        for _, v in _walk(doc):
            if isinstance(v, dict):
                out |= set(v)
    return sorted(out, key=repr)


# ---------------------------------------------------------------------------------------
# the estate, mutated


@dataclass
class Mutated:
    """One example: the estate's files, and what was done to the example to get them."""

    files: Files
    steps: list[str] = field(default_factory=list)


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes a :class:`Raw` as a marker replaced by its text afterwards."""


def _dump(doc: Any, flow: bool, width: int = 4096) -> str:
    raws: list[str] = []

    def represent_raw(dumper: yaml.SafeDumper, raw: Raw) -> yaml.Node:
        raws.append(raw.text)
        return dumper.represent_str(f"ZZRAW{len(raws) - 1}ZZ")

    class Dumper(_Dumper):
        pass

    Dumper.add_representer(Raw, represent_raw)
    text = yaml.dump(doc, Dumper=Dumper, default_flow_style=flow, allow_unicode=True,
                     sort_keys=False, width=width)
    for i in reversed(range(len(raws))):
        text = text.replace(f"ZZRAW{i}ZZ", raws[i])
    return text


FILE_OPS = frozenset({"drop", "duplicate", "add", "folder", "drop-folder", "move"})


@st.composite
def estates(draw: st.DrawFn, families: frozenset[str] = frozenset(RAW_FAMILIES),
            file_ops: frozenset[str] = FILE_OPS, max_steps: int = 4) -> Mutated:
    """The example estate with 0..``max_steps`` structural mutations of its YAML files
    (raw YAML of ``families`` among the values), then maybe file-level changes
    (``file_ops``), then maybe raw byte changes."""
    values = hostile_values(families)
    keys = _key_strategy(families)
    docs: dict[str, Any] = {}
    steps: list[str] = []
    for _ in range(draw(st.integers(0, max_steps))):
        _structural_change(draw, docs, values, keys, steps)
    files = _written(draw, docs, steps)
    file_changes = bool(file_ops) and draw(st.booleans())
    for _ in range(draw(st.integers(0, 2) if file_changes else st.just(0))):
        _file_change(draw, files, steps, families, file_ops)
    for _ in range(draw(st.integers(0, 2) if draw(st.booleans()) else st.just(0))):
        _byte_change(draw, files, steps)
    return Mutated(files, steps)


def _key_strategy(families: frozenset[str]) -> st.SearchStrategy[Any]:
    """Keys to add or rename to: the estate's own, text, hostile text, other scalars, and
    raw YAML of ``families`` (but the bombs)."""
    key_options: list[st.SearchStrategy[Any]] = [
        st.sampled_from(_keys()), st.text(max_size=12), st.sampled_from(_HOSTILE_TEXT),
        st.integers(), st.none(), st.booleans(), st.floats()]
    if families - {"alias-bomb", "merge-bomb"}:
        key_options.append(raw_values(families - {"alias-bomb", "merge-bomb"}))
    return st.one_of(*key_options)


def _structural_change(draw: st.DrawFn, docs: dict[str, Any], values: st.SearchStrategy[Any],
                       keys: st.SearchStrategy[Any], steps: list[str]) -> None:
    """One change at a drawn place of a drawn file's document (in ``docs``, copied from
    :data:`DOCS` on its first change): a value replaced, a key or item deleted, added,
    written twice or renamed."""
    rel = draw(st.sampled_from(sorted(DOCS)))
    doc = docs.setdefault(rel, copy.deepcopy(DOCS[rel]))
    paths = [p for p, _ in _walk(doc)]
    path = draw(st.sampled_from(paths))
    target = _get(doc, path)
    op = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add-key",
                               "dup-key", "dup-item", "rename-key"]))
    if op == "replace":
        value = draw(values)
        docs[rel] = _set(doc, path, value)
        steps.append(f"{rel}: {list(path)} = {value!r:.200}")
    elif op == "delete" and path:
        parent = _get(doc, path[:-1])
        del parent[path[-1]]
        steps.append(f"{rel}: delete {list(path)}")
    elif op in ("add-key", "rename-key") and isinstance(target, dict):
        _key_change(draw, op, rel, path, target, values, keys, steps)
    elif op == "dup-key" and isinstance(target, dict) and target:
        key = draw(st.sampled_from(list(target)))
        flow = _flow(target)
        dup = _flow({key: draw(values) if draw(st.booleans()) else target[key]})
        if flow.endswith("}") and dup.startswith("{") and "\n" not in flow + dup:
            raw = Raw(flow[:-1] + (", " if len(flow) > 2 else "") + dup[1:])
            docs[rel] = _set(doc, path, raw)
            steps.append(f"{rel}: {list(path)} writes key {key!r} twice")
    elif op == "dup-item" and isinstance(target, list) and target:
        i = draw(st.integers(0, len(target) - 1))
        target.insert(i, copy.deepcopy(target[i]))
        steps.append(f"{rel}: {list(path)} item {i} twice")


def _key_change(draw: st.DrawFn, op: str, rel: str, path: tuple[Any, ...],
                target: dict[Any, Any], values: st.SearchStrategy[Any],
                keys: st.SearchStrategy[Any], steps: list[str]) -> None:
    """``add-key`` (a drawn key not there yet, with a drawn value) or ``rename-key`` (a key
    of a non-empty ``target`` renamed to a drawn one not there yet)."""
    if op == "add-key":
        key, value = draw(keys), draw(values)
        if isinstance(key, Raw) or key not in target:
            target[key] = value
            steps.append(f"{rel}: {list(path)} add {key!r:.100}: {value!r:.200}")
    elif target:
        old = draw(st.sampled_from(list(target)))
        new = draw(keys)
        if not isinstance(new, Raw) and new not in target:
            target[new] = target.pop(old)
            steps.append(f"{rel}: {list(path)} key {old!r} renamed {new!r:.100}")


def _written(draw: st.DrawFn, docs: dict[str, Any], steps: list[str]) -> Files:
    """The example estate's files with the changed documents written over theirs (block or
    flow style, drawn); one YAML cannot write is left as it was."""
    files: Files = dict(BASE)
    for rel, doc in docs.items():
        try:
            text = _dump(doc, flow=draw(st.booleans()))
        except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
            steps.append(f"{rel}: not dumped ({exc.__class__.__name__}), left as it was")
            continue
        files[rel] = text.encode("utf-8", "surrogatepass")
    return files


_NEW_NAMES = [
    "sites/hue.yml", "systems/crm.yml", "systems/crm.yaml", "systems/..yml",
    "systems/ spaced name.yml", "systems/\x1b[2J.yml", "systems/line\nbreak.yml",
    "systems/ünï.yml", "sites/.hidden.yml", "systems/x.txt", "systems/UPPER.YML",
    "systems/" + "l" * 200 + ".yml", "estate.yaml", "sites/sub/x.yml",
]


def _file_change(draw: st.DrawFn, files: Files, steps: list[str],
                 families: frozenset[str], file_ops: frozenset[str]) -> None:
    existing = sorted(rel for rel, content in files.items() if content is not None)
    op = draw(st.sampled_from(sorted(file_ops)))
    if op == "drop" and existing:
        rel = draw(st.sampled_from(existing))
        del files[rel]
        steps.append(f"drop {rel}")
    elif op == "duplicate" and existing:
        rel = draw(st.sampled_from(existing))
        new = draw(st.sampled_from(_NEW_NAMES))
        files[new] = files[rel]
        steps.append(f"copy {rel} to {new!r}")
    elif op == "add":
        new = draw(st.sampled_from(_NEW_NAMES))
        content = draw(st.one_of(
            st.binary(max_size=200),
            st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
            raw_values(families).map(lambda r: r.text.encode()) if families
            else st.just(b""),
            st.just(b""), st.just(b"\xff\xfe\x00"), st.just("é".encode("latin-1")),
        ))
        files[new] = content
        steps.append(f"add {new!r} ({len(content)} bytes)")
    elif op == "folder":
        new = draw(st.sampled_from(_NEW_NAMES))
        files[new] = None
        steps.append(f"a folder named {new!r}")
    elif op == "drop-folder":
        folder = draw(st.sampled_from(["sites/", "systems/"]))
        for rel in [r for r in files if r.startswith(folder)]:
            del files[rel]
        steps.append(f"drop {folder}")
    elif op == "move" and existing:
        rel = draw(st.sampled_from(existing))
        name = rel.rsplit("/", 1)[-1]
        new = draw(st.sampled_from([f"sites/{name}", f"systems/{name}", name]))
        files[new] = files.pop(rel)
        steps.append(f"move {rel} to {new}")


def _byte_change(draw: st.DrawFn, files: Files, steps: list[str]) -> None:
    existing = sorted(rel for rel, content in files.items() if content is not None)
    if not existing:
        return
    rel = draw(st.sampled_from(existing))
    data = files[rel]
    assert data is not None
    op = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "encode", "bom",
                               "crlf", "tabs"]))
    at = draw(st.integers(0, len(data)))
    if op == "truncate":
        data = data[:at]
    elif op == "flip" and data:
        i = min(at, len(data) - 1)
        data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    elif op == "insert":
        data = data[:at] + draw(st.one_of(
            st.binary(min_size=1, max_size=8),
            st.sampled_from([b"\x00", b"\t", b"\r", b"\n", b"\xef\xbb\xbf", b"\xff", b"&a ",
                             b"*a ", b"!!binary ", b"<<: ", b": ", b"- ", b"#", b"'", b'"',
                             b"[", b"{", b"\x1b[2J", b"\xc3", b"\xed\xa0\x80"]))) + data[at:]
    elif op == "delete":
        data = data[:at] + data[at + draw(st.integers(1, 16)):]
    elif op == "encode":
        codec = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "latin-1", "cp1258"]))
        data = data.decode("utf-8", "replace").encode(codec, "replace")
        op += f" {codec}"
    elif op == "bom":
        data = b"\xef\xbb\xbf" + data
    elif op == "crlf":
        data = data.replace(b"\n", b"\r\n")
    elif op == "tabs":
        data = data.replace(b"  ", b"\t")
    files[rel] = data
    steps.append(f"{rel}: bytes {op} at {at}")


# ---------------------------------------------------------------------------------------
# one example: write, load, judge


class Hang(Exception):
    """The example ran past :data:`EXAMPLE_SECONDS`."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread after ``seconds`` (no bound elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def write_estate(files: Files, root: Path) -> None:
    """Write ``files`` into ``root`` (emptied first)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for rel, content in sorted(files.items(), key=lambda kv: kv[1] is not None):
        path = root / rel
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                continue  # a folder of that name was asked for too
            path.write_bytes(content)


@dataclass
class Failure:
    """What broke the contract, and where."""

    kind: str  # "exception", "hang", "memory", "problems"
    summary: str  # the last lines of the traceback, or what was wrong
    signature: tuple[str, ...]  # distinct failures have distinct signatures
    files: Files = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)


def _frames(tb: Any) -> list[traceback.FrameSummary]:
    return [f for f in traceback.extract_tb(tb) if not f.filename.endswith("fuzz_estate.py")]


def _where(frame: traceback.FrameSummary, line: bool = True) -> str:
    path = frame.filename
    for marker in ("site-packages/", str(PROJECT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{frame.lineno}" if line else f"{path} {frame.name}"


def _tail(exc: BaseException, lines: int = 8) -> str:
    text = "".join(traceback.format_exception(exc)).rstrip().splitlines()
    return "\n".join(text[-lines:])


def check(root: Path, seconds: float = EXAMPLE_SECONDS) -> Failure | None:
    """Load the estate in ``root``: None when the contract holds."""
    try:
        with time_limit(seconds):
            load_estate(root)
    except EstateError as exc:
        return _check_problems(exc)
    except (Hang, MemoryError) as exc:
        kind = "hang" if isinstance(exc, Hang) else "memory"
        frames = _frames(exc.__traceback__)
        ours = [f for f in frames if "/orchestrator/" in f.filename]
        sig = (kind, _where(ours[-1]) if ours else "", _where(frames[-1], line=False)
               if frames else "")
        return Failure(kind, _tail(exc, 12), sig)
    except Exception as exc:
        frames = _frames(exc.__traceback__)
        sig = ("exception", exc.__class__.__name__, _where(frames[-1]) if frames else "")
        return Failure("exception", _tail(exc), sig)
    return None


def _check_problems(exc: EstateError) -> Failure | None:
    """An EstateError's problems are (file, key, message) strings, a file named each, all
    printable (UTF-8)."""
    wrong: list[str] = []
    if not exc.problems:
        wrong.append("no problem listed")
    for problem in exc.problems:
        if not (isinstance(problem, tuple) and len(problem) == 3
                and all(isinstance(p, str) for p in problem)):
            wrong.append(f"not (file, key, message) strings: {problem!r:.300}")
            continue
        if not problem[0]:
            wrong.append(f"no file named: {problem!r:.300}")
        try:
            "".join(problem).encode("utf-8")
        except UnicodeEncodeError:
            wrong.append(f"cannot be printed as UTF-8: {problem!r:.300}")
    if not wrong:
        return None
    return Failure("problems", "\n".join(wrong[:5]), ("problems", wrong[0].split(":")[0]))


# ---------------------------------------------------------------------------------------
# the run: rounds of Hypothesis, each shrinking one new failure


class _TimeUp(BaseException):
    """The run's time is over (a BaseException: Hypothesis lets it through)."""


class _Found(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(f"{failure.kind}: {failure.signature}")
        self.failure = failure


def _size(files: Files) -> int:
    return sum(len(c or b"") + len(r) for r, c in files.items())


def _show(text: bytes, limit: int = 3000) -> str:
    shown = text.decode("utf-8", "backslashreplace")
    shown = "".join(c if c in "\n" or c.isprintable() else repr(c)[1:-1] for c in shown)
    if len(shown) > limit:
        shown = shown[:limit] + f"\n… ({len(shown) - limit} more characters: see the saved file)"
    return shown


def describe(failure: Failure) -> str:
    """The failure, with the files that differ from the example's."""
    out = [f"== {failure.kind}: {' | '.join(failure.signature)}", failure.summary, "",
           "steps: " + "; ".join(failure.steps), "reproducer (files that differ from "
           "inventory/; the others as in the example):"]
    for rel in sorted(set(failure.files) | set(BASE)):
        if rel in failure.files and BASE.get(rel, b"?") == failure.files[rel] \
                and rel in BASE:
            continue
        if rel not in failure.files:
            out.append(f"--- {rel!r}: removed")
        elif failure.files[rel] is None:
            out.append(f"--- {rel!r}: a folder")
        else:
            out.append(f"--- {rel!r}:\n{_show(failure.files[rel] or b'')}")
    return "\n".join(out)


def save(failure: Failure, folder: Path) -> None:
    write_estate(failure.files, folder / "estate")
    (folder / "failure.txt").write_text(describe(failure) + "\n", encoding="utf-8")


@dataclass
class Run:
    deadline: float
    hard_deadline: float
    root: Path
    known: set[tuple[str, ...]] = field(default_factory=set)
    target: tuple[str, ...] | None = None
    examples: int = 0
    pending: dict[tuple[str, ...], Failure] = field(default_factory=dict)
    smallest: Failure | None = None

    def one(self, case: Mutated) -> None:
        now = time.monotonic()
        if (self.target is None and now > self.deadline) or now > self.hard_deadline:
            raise _TimeUp
        self.examples += 1
        write_estate(case.files, self.root)
        failure = check(self.root)
        if failure is None or failure.signature in self.known:
            return
        failure.files, failure.steps = case.files, case.steps
        if self.target is None:
            self.target = failure.signature
        if failure.signature != self.target:
            self.pending.setdefault(failure.signature, failure)
            return
        if self.smallest is None or _size(case.files) < _size(self.smallest.files):
            self.smallest = failure
        raise _Found(failure)


def fuzz(seconds: float, database: Path | None, families: frozenset[str]) -> int:
    start = time.monotonic()
    run = Run(deadline=start + seconds, hard_deadline=start + seconds + max(60, seconds / 4),
              root=WORK / "current")
    shown = settings(
        max_examples=10**9, deadline=None, derandomize=False,
        database=DirectoryBasedExampleDatabase(str(database)) if database else None,
        suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
        phases=[Phase.reuse, Phase.generate, Phase.shrink], print_blob=False,
        verbosity=Verbosity.quiet,
    )

    @shown
    @given(estates(families))
    def property_(case: Mutated) -> None:
        run.one(case)

    findings = _rounds(property_, run, start)
    findings += _not_shrunk(run)
    elapsed = time.monotonic() - start
    _save_and_list(findings, run.examples, elapsed)
    return 1 if findings else 0


def _rounds(property_: Callable[[], None], run: Run, start: float) -> list[Failure]:
    """Hypothesis run again and again, each time until it found and shrank one new failure,
    until the time is up (or the fuzzer itself failed). Out: the failures, printed as
    found."""
    findings: list[Failure] = []
    while True:
        run.target, run.smallest = None, None
        try:
            property_()
        except _TimeUp:
            if run.smallest is not None:  # time ran out while shrinking: report the smallest
                findings.append(run.smallest)
                run.known.add(run.smallest.signature)
            break
        except _Found as found:
            failure = found.failure
            findings.append(failure)
            run.known.add(failure.signature)
            print(f"\n[{time.monotonic() - start:6.0f} s] found after {run.examples} examples:"
                  f"\n{describe(failure)}\n", flush=True)
            continue
        except Exception as exc:  # Hypothesis' own (a flaky failure, say)
            if run.smallest is None:
                print(f"the fuzzer itself failed: {_tail(exc)}", file=sys.stderr)
                break
            findings.append(run.smallest)  # did not fail again when replayed: unshrunk
            run.known.add(run.smallest.signature)
            print(f"\n({exc.__class__.__name__}: as found)\n{describe(run.smallest)}\n",
                  flush=True)
            continue
        break
    return findings


def _not_shrunk(run: Run) -> list[Failure]:
    """The failures seen while shrinking another one, never shrunk themselves (printed)."""
    findings: list[Failure] = []
    for sig, failure in run.pending.items():
        if sig not in run.known:
            findings.append(failure)
            run.known.add(sig)
            print(f"\n(not shrunk)\n{describe(failure)}\n", flush=True)
    return findings


def _save_and_list(findings: list[Failure], examples: int, elapsed: float) -> None:
    """Each finding saved in its own folder under ``findings/`` (the old ones removed), and
    the list of them."""
    if WORK.joinpath("findings").exists():
        shutil.rmtree(WORK / "findings")
    for i, failure in enumerate(findings, 1):
        save(failure, WORK / "findings" / f"{i:02d}")
    print(f"\nfuzz: {examples} examples in {elapsed:.0f} s, {len(findings)} distinct "
          f"failure(s)" + (f", saved in {WORK / 'findings'}" if findings else ""))
    for i, failure in enumerate(findings, 1):
        print(f"  {i:02d} {failure.kind}: {' | '.join(failure.signature[1:])}")


def _limit_memory(limit: int) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="stop generating after this many seconds (default 60)")
    parser.add_argument("--no-database", action="store_true",
                        help="do not replay or save examples in .hopnhat/fuzz/hypothesis")
    parser.add_argument("--without", action="append", default=[],
                        choices=sorted(RAW_FAMILIES), help="leave out a family of raw YAML")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    # the strategies sample from long values (100 kB strings): their repr is long, not wrong
    warnings.filterwarnings("ignore", category=HypothesisWarning)
    _limit_memory(MEMORY_BYTES)
    # a hang in C code (no SIGALRM handler runs) or a crash of the interpreter: the
    # traceback is printed, the process ends, the estate it was loading stays on disk
    faulthandler.enable()
    faulthandler.dump_traceback_later(args.seconds + max(60, args.seconds / 4) + 120,
                                      exit=True)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    print(f"fuzz: {args.seconds:g} s; each example within {EXAMPLE_SECONDS:g} s and "
          f"{MEMORY_BYTES // 1024**2} MiB; the estate being loaded is "
          f"{WORK / 'current'} (the reproducer, should this process die)", flush=True)
    families = frozenset(RAW_FAMILIES) - set(args.without)
    return fuzz(args.seconds, None if args.no_database else WORK / "hypothesis", families)

if __name__ == "__main__":
    sys.exit(main())
