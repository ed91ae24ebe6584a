"""The lab's link between the sites: the secondary site's networks behind rules the lab controls.

The lab's addresses all live on loopback (a site's networks are 127.X subnets on ``lo``), and a
loopback address never crosses a veth pair, so the link is made where the packets really pass:
``lo``'s output path, matched by the secondary site's subnets.

- **cut**: an nftables table of this lab's own (``inet hopnhat_lab_<id>``) drops every packet
  to or from the secondary site's subnets. Nothing is refused: a connection under way hangs
  until its keep-alives or timeouts notice, a new one gets no answer — as when the link
  between two data centres goes down.
- **slow**: an HTB class of this lab's own on ``lo`` (its own filter priority, so several labs
  on one machine keep apart) limits the rate of that traffic; ``--latency`` adds a netem
  delay under it where the kernel has netem (``CONFIG_NET_SCH_NETEM``), and is refused,
  saying so, where it has not.
- **restore**: both removed. ``lab down`` restores the link too.

What the link does is kept in ``lab_dir/link.json`` (subnets, table, class), so restore and
``lab down`` need no estate. Every command is an argv list; the nftables script goes to
``nft -f -`` on stdin, built from addresses the estate's model already parsed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from orchestrator import process
from orchestrator.errors import CommandError, LabError
from orchestrator.estate.model import Estate
from orchestrator.lab.processes import ProcessTable, is_alive

DEVICE = "lo"
ROOT_HANDLE = "1:"
#: the class unshaped traffic falls into once an HTB root is on ``lo``: far above what
#: loopback carries, so only the lab's own class limits anything
DEFAULT_CLASS = "1:1"
DEFAULT_RATE = "200gbit"
EXIT_BAD_INPUT = 2

_RATE = re.compile(r"^\d+(?:\.\d+)?(?:bit|kbit|mbit|gbit|tbit)$")
_LATENCY = re.compile(r"^\d+(?:\.\d+)?(?:us|ms|s)$")


@dataclass
class LinkState:
    """What the lab did to its link (``link.json``)."""

    subnets: list[str]
    table: str
    class_minor: int
    cut: bool = False
    rate: str | None = None
    latency: str | None = None

    @property
    def state(self) -> str:
        if self.cut:
            return "cut"
        return "slow" if self.rate else "up"

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "subnets": self.subnets, "rate": self.rate,
                "latency": self.latency}


# ------------------------------------------------------------------ pure parts


def secondary_subnets(estate: Estate) -> list[str]:
    """The subnets behind the link: every network of the estate's secondary sites, and the
    address of each repository host there that no such network holds. Sorted, unique."""
    secondary = {name for name, site in estate.sites.items() if site.role == "secondary"}
    nets = {ipaddress.ip_network(str(n.subnet)) for name in secondary
            for n in estate.sites[name].networks.values()}
    for host in estate.settings.repository_hosts:
        address = ipaddress.ip_address(str(host.address))
        if host.site in secondary and not any(address in net for net in nets):
            nets.add(ipaddress.ip_network(f"{address}/32"))
    return [str(n) for n in sorted(nets, key=lambda n: (int(n.network_address), n.prefixlen))]


def lab_id(lab_dir: Path) -> str:
    """A short, stable name of one lab on this machine (from its folder's path)."""
    return hashlib.sha256(str(lab_dir.resolve()).encode()).hexdigest()[:10]


def class_minor(lab_dir: Path) -> int:
    """This lab's HTB class minor and filter priority: 2..4095, from its folder's path."""
    return 2 + int(lab_id(lab_dir), 16) % 4094


def nft_cut_script(table: str, subnets: list[str]) -> str:
    """The nftables script that drops every packet to or from ``subnets``."""
    if not subnets:
        raise LabError("the estate has no secondary site network: there is no link to cut")
    checked = ", ".join(str(ipaddress.ip_network(s)) for s in subnets)
    return (f"table inet {table} {{\n"
            "  chain output {\n"
            "    type filter hook output priority 0; policy accept;\n"
            f"    ip daddr {{ {checked} }} drop\n"
            f"    ip saddr {{ {checked} }} drop\n"
            "  }\n"
            "}\n")


def check_rate(rate: str) -> str:
    """``rate`` as tc reads it (``1gbit``, ``100mbit``…); :class:`LabError` (exit 2) else."""
    value = rate.strip().lower()
    if not _RATE.match(value) or float(re.sub(r"[a-z]+$", "", value)) <= 0:
        raise LabError(f"--rate {rate!r}: give a rate such as 1gbit, 100mbit or 512kbit",
                       exit_code=EXIT_BAD_INPUT)
    return value


def check_latency(latency: str) -> str:
    """``latency`` as tc reads it (``5ms``, ``20ms``, ``250us``); :class:`LabError` else."""
    value = latency.strip().lower()
    if not _LATENCY.match(value):
        raise LabError(f"--latency {latency!r}: give a delay such as 5ms, 20ms or 250us",
                       exit_code=EXIT_BAD_INPUT)
    return value


def tc_slow_argvs(minor: int, subnets: list[str], rate: str,
                  latency: str | None) -> list[list[str]]:
    """The tc commands that put this lab's class (rate-limited, optionally delayed) under
    ``lo``'s HTB root, with one filter per subnet and direction at the class's own priority.
    The root itself is made by :func:`tc_root_argv` when missing."""
    classid = f"1:{minor:x}"
    argvs = [["tc", "class", "replace", "dev", DEVICE, "parent", ROOT_HANDLE, "classid",
              classid, "htb", "rate", rate, "ceil", rate]]
    if latency:
        argvs.append(["tc", "qdisc", "replace", "dev", DEVICE, "parent", classid, "handle",
                      f"{minor:x}:", "netem", "delay", latency])
    for subnet in subnets:
        for direction in ("dst", "src"):
            argvs.append(["tc", "filter", "add", "dev", DEVICE, "parent", ROOT_HANDLE,
                          "protocol", "ip", "prio", str(minor), "u32", "match", "ip",
                          direction, str(ipaddress.ip_network(subnet)), "flowid", classid])
    return argvs


def tc_root_argv() -> list[str]:
    """The HTB root on ``lo`` whose default class leaves other traffic alone."""
    return ["tc", "qdisc", "add", "dev", DEVICE, "root", "handle", ROOT_HANDLE, "htb",
            "default", DEFAULT_CLASS.split(":")[1]]


def tc_default_class_argv() -> list[str]:
    return ["tc", "class", "replace", "dev", DEVICE, "parent", ROOT_HANDLE, "classid",
            DEFAULT_CLASS, "htb", "rate", DEFAULT_RATE]


def tc_unslow_argvs(minor: int) -> list[list[str]]:
    """The tc commands that take this lab's filters and class away (the root stays while
    another lab's class is under it; :func:`restore` removes it when none is)."""
    return [["tc", "filter", "del", "dev", DEVICE, "parent", ROOT_HANDLE, "prio", str(minor)],
            ["tc", "class", "del", "dev", DEVICE, "classid", f"1:{minor:x}"]]


# ------------------------------------------------------------------ state


def state_path(lab_dir: Path) -> Path:
    return lab_dir / "link.json"


def load_state(lab_dir: Path) -> LinkState | None:
    """What ``link.json`` says, or None when the link was never touched."""
    try:
        raw = json.loads(state_path(lab_dir).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LabError(f"{state_path(lab_dir)}: unreadable: {exc}") from exc
    return LinkState(**raw)


def _save(lab_dir: Path, state: LinkState) -> None:
    path = state_path(lab_dir)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    tmp.replace(path)


def require_running_lab(lab_dir: Path) -> None:
    """:class:`LabError` (exit 2) unless a process of this lab is alive."""
    if not any(is_alive(r) for r in ProcessTable(lab_dir).all()):
        raise LabError(f"no lab is running in {lab_dir}: start it with `hopnhat lab up`",
                       exit_code=EXIT_BAD_INPUT)


# ------------------------------------------------------------------ actions


def _run(argv: list[str], *, input: str | None = None, ok_codes: tuple[int, ...] = (0,)) -> str:
    try:
        done = process.run(argv, input=input, timeout=30, inherit_env=False)
    except CommandError as exc:
        raise LabError(f"{argv[0]}: {exc} (the lab's link needs {argv[0]}: install "
                       f"{'nftables' if argv[0] == 'nft' else 'iproute2'})") from exc
    if done.returncode not in ok_codes:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise LabError(f"{' '.join(argv[:4])}… failed: {message[-1] if message else ''}")
    return done.stderr


def _state(lab_dir: Path, estate: Estate | None) -> LinkState:
    state = load_state(lab_dir)
    if state is None:
        if estate is None:
            raise LabError("the link was never set up for this lab")
        state = LinkState(subnets=secondary_subnets(estate),
                          table=f"hopnhat_lab_{lab_id(lab_dir)}",
                          class_minor=class_minor(lab_dir))
    return state


def cut(lab_dir: Path, estate: Estate) -> LinkState:
    """Drop every packet to or from the secondary site (idempotent)."""
    require_running_lab(lab_dir)
    state = _state(lab_dir, estate)
    _run(["nft", "delete", "table", "inet", state.table], ok_codes=(0, 1))
    _run(["nft", "-f", "-"], input=nft_cut_script(state.table, state.subnets))
    state.cut = True
    _save(lab_dir, state)
    return state


def slow(lab_dir: Path, estate: Estate, rate: str, latency: str | None = None) -> LinkState:
    """Limit the secondary site's traffic to ``rate`` (and delay it by ``latency`` where
    the kernel can); replaces an earlier ``slow``."""
    rate = check_rate(rate)
    latency = check_latency(latency) if latency else None
    require_running_lab(lab_dir)
    state = _state(lab_dir, estate)
    for argv in tc_unslow_argvs(state.class_minor):
        _run(argv, ok_codes=(0, 1, 2))
    _run(tc_root_argv(), ok_codes=(0, 2))  # 2: the root is there already (another lab's)
    _run(tc_default_class_argv())
    try:
        for argv in tc_slow_argvs(state.class_minor, state.subnets, rate, latency):
            _run(argv)
    except LabError as exc:
        for argv in tc_unslow_argvs(state.class_minor):
            _run(argv, ok_codes=(0, 1, 2))
        _remove_root_if_unused()
        if latency and ("netem" in str(exc).lower() or "kind is unknown" in str(exc)):
            raise LabError("this machine's kernel has no netem (CONFIG_NET_SCH_NETEM): the "
                           "link can be cut and its rate limited, not delayed; run without "
                           "--latency", exit_code=EXIT_BAD_INPUT) from exc
        raise
    state.rate, state.latency = rate, latency
    _save(lab_dir, state)
    return state


def restore(lab_dir: Path) -> LinkState | None:
    """Undo cut and slow (idempotent; a lab whose link was never touched has nothing)."""
    state = load_state(lab_dir)
    if state is None:
        return None
    _run(["nft", "delete", "table", "inet", state.table], ok_codes=(0, 1))
    for argv in tc_unslow_argvs(state.class_minor):
        _run(argv, ok_codes=(0, 1, 2))
    _remove_root_if_unused()
    state.cut, state.rate, state.latency = False, None, None
    _save(lab_dir, state)
    return state


def _remove_root_if_unused() -> None:
    """Remove ``lo``'s HTB root when no lab's class is left under it."""
    try:
        done = process.run(["tc", "class", "show", "dev", DEVICE], timeout=30,
                           inherit_env=False)
    except CommandError:
        return
    classes = [line.split()[2] for line in done.stdout.splitlines()
               if line.startswith("class htb")]
    if done.ok and set(classes) <= {DEFAULT_CLASS}:
        _run(["tc", "qdisc", "del", "dev", DEVICE, "root"], ok_codes=(0, 1, 2))


def status(lab_dir: Path) -> dict[str, Any]:
    """The link as the lab left it: state (up, cut, slow), subnets, rate, latency."""
    state = load_state(lab_dir)
    return state.as_dict() if state else {"state": "up", "subnets": [], "rate": None,
                                          "latency": None}
