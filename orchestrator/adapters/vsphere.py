"""vCenter through pyVmomi: one session per run, reads through the PropertyCollector.

State is read with ContainerView + RetrievePropertiesEx (and ContinueRetrievePropertiesEx
paging) with explicit property paths — never lazy per-object attribute access in a loop,
which costs one HTTP request per attribute (and crashes vcsim 0.24's Fetch). Tasks are
waited for the same way: a bounded poll of ``info.state`` through RetrievePropertiesEx,
never ``task.info``.

:class:`VCenter` is one logged-in session with its ServiceContent read once; one instance
is shared by the worker threads of a run (pyVmomi's stub hands each call its own pooled
HTTP connection under a lock). Every failure leaves as a :class:`VSphereError` naming the
vCenter and what was being done; never a password, never a pyVmomi object dump.

The specs sent to it are built by the pure functions of :mod:`vsphere_specs`.
"""

from __future__ import annotations

import http.client
import logging
import ssl
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from orchestrator.adapters.vsphere_xml import UnsupportedValue, get_wsdl_type, parse_page
from orchestrator.errors import VSphereError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    """How to reach one vCenter. ``password`` comes from the vault, never from argv.
    ``sites``: the estate's sites whose vCenter it is (named in every error)."""

    url: str
    username: str
    password: str
    ca_bundle: Path | None = None
    insecure: bool = False
    timeout: float = 60.0
    sites: tuple[str, ...] = ()
    #: who turned TLS verification off (``--insecure``, or the site's file): warned of
    insecure_by: str = "--insecure"

    @property
    def label(self) -> str:
        """How errors name this vCenter: ``https://…/sdk (site quangnam)``."""
        if not self.sites:
            return self.url
        return f"{self.url} (site{'s' if len(self.sites) > 1 else ''} {', '.join(self.sites)})"

    def __repr__(self) -> str:  # never show the password, even in a debugger
        return f"Endpoint(url={self.url!r}, username={self.username!r})"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)


_warned: set[str] = set()


def warn_insecure(endpoint: Endpoint) -> None:
    """Say (once a command, on stderr) that ``endpoint``'s certificate is not checked, who
    said so, and what it costs."""
    if endpoint.url in _warned:
        return
    _warned.add(endpoint.url)
    log.warning("TLS verification of vCenter %s is OFF (%s): its certificate is not "
                "checked, so whoever sits between here and it can read the vCenter password",
                endpoint.label, endpoint.insecure_by)


def _ssl_context(endpoint: Endpoint) -> ssl.SSLContext | None:
    if urlsplit(endpoint.url).scheme != "https":
        return None
    if endpoint.insecure:
        warn_insecure(endpoint)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if endpoint.ca_bundle is not None and not endpoint.ca_bundle.is_file():
        raise VSphereError(f"{endpoint.label}: CA bundle {endpoint.ca_bundle} does not exist")
    return ssl.create_default_context(
        cafile=str(endpoint.ca_bundle) if endpoint.ca_bundle else None)


def connect(endpoint: Endpoint) -> vim.ServiceInstance:
    """Log in; raises VSphereError naming the vCenter (wrong credentials, unreachable,
    certificate not trusted). The password never appears in the message."""
    parts = urlsplit(endpoint.url)
    try:
        return SmartConnect(
            protocol=parts.scheme, host=endpoint.host, port=endpoint.port,
            path=parts.path or "/sdk", user=endpoint.username, pwd=endpoint.password,
            sslContext=_ssl_context(endpoint), httpConnectionTimeout=endpoint.timeout,
        )
    except vim.fault.InvalidLogin:
        raise VSphereError(f"{endpoint.label}: vCenter refused the login of "
                           f"{endpoint.username!r} (wrong user name or password)") from None
    except ssl.SSLCertVerificationError as exc:
        raise VSphereError(f"{endpoint.label}: the vCenter certificate is not trusted "
                           f"({exc.verify_message}); give the site a ca_bundle") from None
    except (ConnectionError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "strerror", None) or exc.__class__.__name__
        raise VSphereError(f"{endpoint.label}: cannot reach vCenter ({reason})") from None
    except vmodl.MethodFault as exc:
        raise VSphereError(f"{endpoint.label}: login failed: {fault_text(exc)}") from None


@contextmanager
def session(endpoint: Endpoint) -> Iterator[vim.ServiceInstance]:
    """One session for the run, logged out at the end."""
    si = connect(endpoint)
    try:
        yield si
    finally:
        try:
            Disconnect(si)
        except Exception:  # logout of a dead session is not an error
            log.debug("logout from %s failed", endpoint.url)


def _filter_spec(view: Any, obj_type: type, paths: Sequence[str]) -> Any:
    traversal = vmodl.query.PropertyCollector.TraversalSpec(
        name="traverseEntities", path="view", skip=False, type=vim.view.ContainerView)
    return vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(
            obj=view, skip=True, selectSet=[traversal])],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(
            type=obj_type, pathSet=list(paths), all=False)],
    )


def _collect(collector: Any, specs: list[Any], page_size: int) -> list[dict[str, Any]]:
    """RetrievePropertiesEx then ContinueRetrievePropertiesEx until the last page."""
    result = collector.RetrievePropertiesEx(
        specs, vmodl.query.PropertyCollector.RetrieveOptions(maxObjects=page_size))
    rows: list[dict[str, Any]] = []
    while result is not None:
        for item in result.objects:
            row: dict[str, Any] = {"obj": item.obj}
            for prop in item.propSet:
                row[prop.name] = prop.val
            rows.append(row)
        if not result.token:
            break
        result = collector.ContinueRetrievePropertiesEx(result.token)
    return rows


def retrieve(si: vim.ServiceInstance, obj_type: type, paths: Sequence[str],
             container: Any = None, page_size: int = 1000) -> list[dict[str, Any]]:
    """Every object of ``obj_type`` under ``container`` (default: the root folder) with the
    given property paths, as ``{"obj": moref, path: value, …}``. A property that is unset
    is absent from the dict. Costs RetrieveServiceContent + CreateContainerView + one
    RetrievePropertiesEx per ``page_size`` objects + DestroyView (:class:`VCenter` saves
    the first by keeping the ServiceContent)."""
    content: Any = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(
        container or content.rootFolder, [obj_type], True)
    try:
        return _collect(content.propertyCollector,
                        [_filter_spec(view, obj_type, paths)], page_size)
    finally:
        view.Destroy()


# ---------------------------------------------------------------- a session for a run

T = TypeVar("T")


class _NotLean(Exception):
    """An answer the lean reader leaves to pyVmomi (a fault)."""


_TRANSPORT_ERRORS = (OSError, http.client.HTTPException)  # refused, reset, timed out, TLS
TASK_TIMEOUT = 3600.0  # a clone of a big template on a busy vCenter takes minutes, not hours
_POLL_FIRST, _POLL_MAX = 0.05, 1.0  # bounded poll: first look at once, then back off


def fault_text(fault: Any) -> str:
    """A pyVmomi fault (or LocalizedMethodFault) in one line: its message, else its type
    name. Never ``str(fault)``, which dumps the whole object."""
    message = getattr(fault, "localizedMessage", None) or getattr(fault, "msg", None)
    inner = getattr(fault, "fault", None)
    kind = type(inner if inner is not None else fault).__name__
    if not message and inner is not None:
        message = getattr(inner, "msg", None)
    return f"{kind}: {message}" if message else kind


def moref_key(ref: Any) -> str:
    """A managed object reference as ``Type:id`` (a dictionary key without a request)."""
    return f"{ref._wsdlName}:{ref._moId}"


class VCenter:
    """One logged-in vCenter session for a run, with its ServiceContent read once.

    Shared by worker threads: each pyVmomi call takes its own pooled HTTP connection.
    Every method raises :class:`VSphereError` (naming the vCenter and the step) for a
    vSphere fault or a lost connection.
    """

    def __init__(self, endpoint: Endpoint, si: Any, pool_size: int = 8) -> None:
        self.endpoint = endpoint
        self.si = si
        # pyVmomi keeps 5 idle connections by default: with more worker threads, each
        # extra call would open (and TLS-handshake) a fresh one
        si._stub.poolSize = max(pool_size, 5)
        self.content: Any = self.call("reading the service content", si.RetrieveContent)
        # the lean reader's references, one object per (type, id): a read of 1,000 VMs
        # names the same hosts, pools and datastores thousands of times
        self._refs: dict[tuple[str, str], Any] = {}

    @property
    def url(self) -> str:
        return self.endpoint.url

    @property
    def name(self) -> str:
        """The URL and the sites it serves, as errors name it."""
        return self.endpoint.label

    def call(self, what: str, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``method(*args, **kwargs)``, its failures as :class:`VSphereError` about ``what``."""
        try:
            return method(*args, **kwargs)
        except vmodl.MethodFault as exc:
            raise VSphereError(f"{self.name}: {what}: {fault_text(exc)}") from None
        except _TRANSPORT_ERRORS as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__
            raise VSphereError(f"{self.name}: lost the connection to vCenter while {what} "
                               f"({reason})") from None

    # ---- reads ---------------------------------------------------------------------
    def _collect(self, what: str, specs: list[Any], page_size: int,
                 lean: bool) -> list[dict[str, Any]]:
        collector = self.content.propertyCollector
        if lean:
            rows = self.call(what, self._lean_collect, collector, specs, page_size)
            if rows is not None:
                return rows
        return self.call(what, _collect, collector, specs, page_size)

    def _lean_collect(self, collector: Any, specs: list[Any],
                      page_size: int) -> list[dict[str, Any]] | None:
        """RetrievePropertiesEx and its pages read by :mod:`vsphere_xml` (ElementTree) instead
        of pyVmomi's deserializer. None when an answer is a fault or holds a value type the
        lean reader does not build: the caller then reads through pyVmomi."""
        options = vmodl.query.PropertyCollector.RetrieveOptions(maxObjects=page_size)
        try:
            page = parse_page(self._raw(collector, "RetrievePropertiesEx", [specs, options]),
                              self._ref)
            rows = list(page.rows)
            while page.token:
                page = parse_page(self._raw(collector, "ContinueRetrievePropertiesEx",
                                            [page.token]), self._ref)
                rows += page.rows
            return rows
        except (UnsupportedValue, ET.ParseError, _NotLean, AttributeError, KeyError) as exc:
            log.debug("lean read of %s not possible (%s): reading through pyVmomi",
                      self.url, exc)
            return None

    def _raw(self, mo: Any, method: str, args: list[Any]) -> bytes:
        """Call ``method`` of ``mo`` with pyVmomi's own serializer, pooled connection and
        session cookie, and return the answer's body unparsed. Raises _NotLean for any
        answer but 200 (a fault: pyVmomi then reads it and raises it properly)."""
        stub = self.si._stub
        request = stub.SerializeRequest(mo, type(mo)._methodInfo[method], args)
        headers = {"Cookie": stub.cookie, "SOAPAction": stub.versionId,
                   "Content-Type": "text/xml; charset=UTF-8"}
        conn = stub.GetConnection()
        try:
            conn.request("POST", stub.path, request, headers)
            response = conn.getresponse()
            body: bytes = response.read()
        except _TRANSPORT_ERRORS:
            conn.close()
            stub.DropConnections()
            raise
        stub.ReturnConnection(conn)
        if response.status != 200:
            raise _NotLean(f"HTTP {response.status}")
        return body

    def _ref(self, wsdl_type: str, moid: str) -> Any:
        ref = self._refs.get((wsdl_type, moid))
        if ref is None:
            ref = get_wsdl_type("urn:vim25", wsdl_type)(moid, self.si._stub)
            self._refs[(wsdl_type, moid)] = ref
        return ref

    def view_properties(self, what: str, properties: dict[type, Sequence[str]],
                        extra: Sequence[tuple[Any, type, Sequence[str]]] = (),
                        page_size: int = 1000, lean: bool = False) -> list[dict[str, Any]]:
        """Objects of every type in ``properties`` (subtypes included) under the root
        folder, each with its listed paths, plus each ``(object, type, paths)`` of
        ``extra`` — all in ONE RetrievePropertiesEx (and its pages). Costs
        CreateContainerView + RetrievePropertiesEx + ContinueRetrievePropertiesEx per
        further page + DestroyView, whatever the number of objects. ``lean``: values as
        :mod:`vsphere_xml` builds them (device lists as :class:`Device` records)."""
        pc = vmodl.query.PropertyCollector
        view = self.call(f"{what} (opening a container view)",
                         self.content.viewManager.CreateContainerView,
                         self.content.rootFolder, list(properties), True)
        try:
            traversal = pc.TraversalSpec(name="traverseView", path="view", skip=False,
                                         type=vim.view.ContainerView)
            objects = [pc.ObjectSpec(obj=view, skip=True, selectSet=[traversal])]
            objects += [pc.ObjectSpec(obj=obj, skip=False) for obj, _, _ in extra]
            props = [pc.PropertySpec(type=t, pathSet=list(p), all=False)
                     for t, p in properties.items()]
            props += [pc.PropertySpec(type=t, pathSet=list(p), all=False) for _, t, p in extra]
            spec = pc.FilterSpec(objectSet=objects, propSet=props)
            return self._collect(what, [spec], page_size, lean)
        finally:
            try:
                view.Destroy()
            except (vmodl.MethodFault, *_TRANSPORT_ERRORS):
                log.debug("could not destroy a container view on %s", self.url)

    def object_properties(self, what: str, objects: Sequence[Any], obj_type: type,
                          paths: Sequence[str], page_size: int = 1000,
                          lean: bool = False) -> list[dict[str, Any]]:
        """The listed paths of the given objects, in ONE RetrievePropertiesEx (and its
        pages). An object that is gone is left out. ``lean`` as for view_properties."""
        if not objects:
            return []
        pc = vmodl.query.PropertyCollector
        spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=o, skip=False) for o in objects],
                             propSet=[pc.PropertySpec(type=obj_type, pathSet=list(paths),
                                                      all=False)])
        return self._collect(what, [spec], page_size, lean)

    def vm_properties(self, vm: Any, name: str, paths: Sequence[str]) -> dict[str, Any]:
        """The listed paths of one VM (one request). Raises VSphereError if it is gone."""
        rows = self.object_properties(f"reading VM {name}", [vm], vim.VirtualMachine, paths)
        if not rows:
            raise VSphereError(f"{self.name}: VM {name} is gone")
        return rows[0]

    # ---- waiting -------------------------------------------------------------------
    def poll(self, what: str, probe: Callable[[], T | None], timeout: float) -> T:
        """Call ``probe`` at once, then with a growing pause (0.05 s … 1 s) until it
        answers something other than None; raise VSphereError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        pause = _POLL_FIRST
        while True:
            answer = probe()
            if answer is not None:
                return answer
            left = deadline - time.monotonic()
            if left <= 0:
                raise VSphereError(f"{self.name}: {what}: no answer within {timeout:.0f} s")
            time.sleep(min(pause, left))
            pause = min(pause * 2, _POLL_MAX)

    def wait_task(self, task: Any, what: str, timeout: float = TASK_TIMEOUT) -> Any:
        """Wait for ``task`` (bounded poll of info.state, one request a look; vcsim's tasks
        are done on the first). Out: ``info.result``. Raises VSphereError with the task's
        fault when it failed."""
        def probe() -> tuple[Any] | None:
            rows = self.object_properties(what, [task], vim.Task,
                                          ["info.state", "info.error", "info.result"])
            if not rows:
                raise VSphereError(f"{self.name}: {what}: the task disappeared")
            state = str(rows[0].get("info.state"))
            if state == "success":
                return (rows[0].get("info.result"),)
            if state == "error":
                raise VSphereError(f"{self.name}: {what} failed: "
                                   f"{fault_text(rows[0].get('info.error'))}")
            return None
        return self.poll(what, probe, timeout)[0]

    def run_task(self, what: str, method: Callable[..., Any], *args: Any,
                 **kwargs: Any) -> Any:
        """Start a ``*_Task`` method and wait for it. Out: the task's result."""
        task = self.call(what, method, *args, **kwargs)
        return self.wait_task(task, what)

    # ---- operations on VMs ---------------------------------------------------------
    def clone_vm(self, template: Any, folder: Any, name: str, spec: Any) -> Any:
        """CloneVM_Task of ``template`` into ``folder`` as ``name``. Out: the new VM."""
        return self.run_task(f"cloning {name}", template.CloneVM_Task,
                             folder=folder, name=name, spec=spec)

    def reconfigure_vm(self, vm: Any, name: str, spec: Any) -> None:
        self.run_task(f"reconfiguring {name}", vm.ReconfigVM_Task, spec=spec)

    def customize_vm(self, vm: Any, name: str, spec: Any) -> None:
        self.run_task(f"customizing {name}", vm.CustomizeVM_Task, spec=spec)

    def power_on_vm(self, vm: Any, name: str) -> None:
        self.run_task(f"powering on {name}", vm.PowerOnVM_Task)

    def power_off_vm(self, vm: Any, name: str) -> None:
        self.run_task(f"powering off {name}", vm.PowerOffVM_Task)

    def destroy_vm(self, vm: Any, name: str) -> None:
        self.run_task(f"destroying {name}", vm.Destroy_Task)

    def vm_devices(self, vm: Any, name: str) -> list[Any]:
        """The VM's virtual devices as they are now (one request)."""
        return list(self.vm_properties(vm, name, ["config.hardware.device"])
                    .get("config.hardware.device") or [])

    def wait_for_ip(self, vm: Any, name: str, ip: str, timeout: float) -> str:
        """Wait until the VM's guest reports ``ip`` (bounded poll of guest.ipAddress).
        Raises VSphereError after ``timeout`` s, saying what the guest reported."""
        seen: list[str | None] = [None]

        def probe() -> str | None:
            value = self.vm_properties(vm, name, ["guest.ipAddress"]).get("guest.ipAddress")
            seen[0] = value
            return value if value == ip else None
        try:
            return self.poll(f"waiting for {name} to report IP {ip}", probe, timeout)
        except VSphereError:
            if seen[0] is not None and seen[0] != ip:
                raise VSphereError(f"{self.name}: {name} reports IP {seen[0]}, not {ip}, "
                                   f"after {timeout:.0f} s") from None
            raise

    # ---- custom attributes ---------------------------------------------------------
    def ensure_fields(self, names: Sequence[str], known: dict[str, int]) -> dict[str, int]:
        """Custom attribute definitions (on VMs) for each of ``names``, created when
        ``known`` (name → key, from the facts) lacks them. Out: name → key of all."""
        fields = dict(known)
        manager = self.content.customFieldsManager
        for name in names:
            if name in fields:
                continue
            try:
                field = manager.AddCustomFieldDef(name=name, moType=vim.VirtualMachine)
                fields[name] = int(field.key)
            except vim.fault.DuplicateName:  # made meanwhile by another run: read it
                rows = self.object_properties("reading custom attributes", [manager],
                                              vim.CustomFieldsManager, ["field"])
                for definition in rows[0].get("field") or [] if rows else []:
                    fields.setdefault(str(definition.name), int(definition.key))
            except vmodl.MethodFault as exc:
                raise VSphereError(f"{self.name}: creating custom attribute {name}: "
                                   f"{fault_text(exc)}") from None
            except _TRANSPORT_ERRORS as exc:
                raise VSphereError(f"{self.name}: lost the connection to vCenter while "
                                   f"creating custom attribute {name} ({exc})") from None
        return fields

    def set_fields(self, vm: Any, name: str, values: dict[int, str]) -> None:
        """Set custom attributes (key → value) on a VM: one SetField each, no task."""
        manager = self.content.customFieldsManager
        for key, value in values.items():
            self.call(f"marking {name}", manager.SetField, entity=vm, key=key, value=value)


@contextmanager
def open_vcenter(endpoint: Endpoint, pool_size: int = 8) -> Iterator[VCenter]:
    """Log in once for the run; log out at the end. Raises VSphereError as :func:`connect`."""
    with session(endpoint) as si:
        yield VCenter(endpoint, si, pool_size)


@contextmanager
def open_vcenters(endpoints: Sequence[Endpoint], pool_size: int = 8
                  ) -> Iterator[dict[str, VCenter]]:
    """One session per vCenter (URL → :class:`VCenter`), all logged out at the end. The
    first vCenter that cannot be logged in to raises its VSphereError (the sessions
    already open are logged out)."""
    with ExitStack() as stack:
        yield {e.url: stack.enter_context(open_vcenter(e, pool_size)) for e in endpoints}


@contextmanager
def open_each_vcenter(endpoints: Sequence[Endpoint], pool_size: int = 8
                      ) -> Iterator[tuple[dict[str, VCenter], dict[str, VSphereError]]]:
    """Like :func:`open_vcenters`, but a vCenter that cannot be logged in to (unreachable,
    refused login, untrusted certificate) does not stop the others: out are the sessions
    (URL → :class:`VCenter`) and the failures (URL → the VSphereError naming it)."""
    with ExitStack() as stack:
        vcenters: dict[str, VCenter] = {}
        failed: dict[str, VSphereError] = {}
        for endpoint in endpoints:
            try:
                vcenters[endpoint.url] = stack.enter_context(open_vcenter(endpoint, pool_size))
            except VSphereError as exc:
                failed[endpoint.url] = exc
        yield vcenters, failed
