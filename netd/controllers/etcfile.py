"""``resolv.conf`` and ``hosts``: rendered from the network statuses, written into the etc dir
(netd.md §5.6).

Two controllers, as in the reference:

* ``network.EtcFileController`` renders the contents into EtcFileSpec
  resources (namespace ``files``) from MachineConfig, HostnameStatus
  ``hostname``, ResolverStatus ``resolvers`` and NodeAddress ``default``;
* ``files.EtcFileController`` writes each EtcFileSpec to ``<etc_dir>/<id>``
  and reports EtcFileStatus ``<id>`` with the spec version it wrote.

Where we differ from Talos (decisions.md): the files are written into
machined's ``--etc-dir`` atomically (temporary file + fsync + rename), not kept
as shadow files bind-mounted over ``/etc``. A file is written only when its
content differs, so steady state and a restart with the same inputs leave the
inode and mtime unchanged. On teardown of a spec (or when machined stops) the
file is **left in place** with its last content: Talos unmounts its bind mount,
but here the etc dir is the node's real ``/etc`` and a node must not lose DNS
because machined stopped. Files in the etc dir whose names are not spec IDs are
never touched.

The rendering functions are pure and unit-tested against the documented examples.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from pydantic import BaseModel

from cosi import Context, Controller, Input, InputKind, Output, OutputKind, Phase
from netd.kernel.files import write_if_changed
from netd.netip import Addr, format_addr
from netd.resources.files import (
    ETC_FILE_MODE,
    ETC_FILE_SPEC_TYPE,
    ETC_FILE_STATUS_TYPE,
    EtcFileSpec,
    EtcFileStatus,
)
from netd.resources.hostname import HOSTNAME_STATUS_TYPE, HostnameStatus, join_fqdn
from netd.resources.ids import (
    ETC_HOSTS_ID,
    ETC_RESOLV_CONF_ID,
    HOSTNAME_ID,
    NODE_ADDRESS_DEFAULT_ID,
    RESOLVERS_ID,
)
from netd.resources.machine_config import MACHINE_CONFIG_ID, MACHINE_CONFIG_TYPE, MachineConfigSpec
from netd.resources.namespaces import CONFIG, FILES, NETWORK
from netd.resources.nodeaddress import NODE_ADDRESS_TYPE, NodeAddress
from netd.resources.resolver import RESOLVER_STATUS_TYPE, ResolverStatus

from .retry import KernelRetry

NETWORK_ETC_FILE_CONTROLLER = "network.EtcFileController"
FILES_ETC_FILE_CONTROLLER = "files.EtcFileController"

MAX_NAMESERVERS = 3  # netd.md §11: what the libc resolver reads (MAXNS)

# ---- rendering (pure) ----------------------------------------------------------------


def render_resolv_conf(dns_servers: Sequence[Addr], domainname: str, disable_search_domain: bool) -> bytes:
    """``nameserver`` lines for the first three servers, then (unless disabled, and only
    with a domain) an empty line and ``search <domain>``. Nothing else (no ``options``)."""
    lines = [f"nameserver {format_addr(a)}\n" for a in dns_servers[:MAX_NAMESERVERS]]
    if not disable_search_domain and domainname:
        lines.append(f"\nsearch {domainname}\n")
    return "".join(lines).encode()


def align_columns(rows: Iterable[tuple[str, str]]) -> str:
    """Go's tabwriter with padding 1 and a space pad character, for two-column lines: the
    first column is padded to the longest first cell + 1, the second written verbatim
    (also when empty: the padding is still written, as tabwriter does)."""
    rows = list(rows)
    width = max((len(a) for a, _ in rows), default=0) + 1
    return "".join(f"{a.ljust(width)}{b}\n" for a, b in rows)


def render_hosts(
    default_ip: Addr, hostname: str, domainname: str, extra_hosts: Iterable[tuple[str, Sequence[str]]] = ()
) -> bytes:
    """``/etc/hosts`` of netd.md §5.6: localhost, the default address with ``fqdn [hostname]``,
    the IPv6 loopback/multicast names, then the configured extra entries (IP verbatim)."""
    fqdn = join_fqdn(hostname, domainname)
    names = fqdn if fqdn == hostname else f"{fqdn} {hostname}"
    rows = [
        ("127.0.0.1", "localhost"),
        (format_addr(default_ip), names),
        ("::1", "localhost ip6-localhost ip6-loopback"),
        ("ff02::1", "ip6-allnodes"),
        ("ff02::2", "ip6-allrouters"),
    ]
    rows.extend((ip, " ".join(aliases)) for ip, aliases in extra_hosts)
    return align_columns(rows).encode()


# ---- network.EtcFileController -------------------------------------------------------


class NetworkEtcFileController(Controller):
    """Statuses → EtcFileSpec ``resolv.conf`` (when ResolverStatus exists) and ``hosts``
    (when HostnameStatus and a non-empty NodeAddress ``default`` exist)."""

    name = NETWORK_ETC_FILE_CONTROLLER

    def inputs(self) -> Sequence[Input]:
        return [
            Input(CONFIG, MACHINE_CONFIG_TYPE, id=MACHINE_CONFIG_ID),
            Input(NETWORK, HOSTNAME_STATUS_TYPE, id=HOSTNAME_ID),
            Input(NETWORK, RESOLVER_STATUS_TYPE, id=RESOLVERS_ID),
            Input(NETWORK, NODE_ADDRESS_TYPE, id=NODE_ADDRESS_DEFAULT_ID),
            # A spec no longer wanted waits in teardown for files.EtcFileController to
            # release it; this input wakes us to destroy it then.
            Input(FILES, ETC_FILE_SPEC_TYPE, InputKind.DESTROY_READY),
        ]

    def outputs(self) -> Sequence[Output]:
        return [Output(FILES, ETC_FILE_SPEC_TYPE, OutputKind.SHARED)]

    async def reconcile(self, ctx: Context) -> None:
        ctx.reconcile_owned(FILES, ETC_FILE_SPEC_TYPE, desired_etc_files(ctx))


def _running_spec(ctx: Context, namespace: str, type_: str, id_: str) -> BaseModel | None:
    r = ctx.get(namespace, type_, id_)
    if r is None or r.md.phase is not Phase.RUNNING:
        return None
    return r.spec


def desired_etc_files(ctx: Context) -> dict[str, BaseModel]:
    mc = _running_spec(ctx, CONFIG, MACHINE_CONFIG_TYPE, MACHINE_CONFIG_ID)
    cfg = mc.config if isinstance(mc, MachineConfigSpec) else None
    hostname = _running_spec(ctx, NETWORK, HOSTNAME_STATUS_TYPE, HOSTNAME_ID)
    resolvers = _running_spec(ctx, NETWORK, RESOLVER_STATUS_TYPE, RESOLVERS_ID)
    default = _running_spec(ctx, NETWORK, NODE_ADDRESS_TYPE, NODE_ADDRESS_DEFAULT_ID)
    out: dict[str, BaseModel] = {}
    if isinstance(resolvers, ResolverStatus):
        disable = cfg.network.disable_search_domain if cfg is not None else False
        domain = hostname.domainname if isinstance(hostname, HostnameStatus) else ""
        out[ETC_RESOLV_CONF_ID] = EtcFileSpec(
            contents=render_resolv_conf(resolvers.dns_servers, domain, disable), mode=ETC_FILE_MODE
        )
    if isinstance(hostname, HostnameStatus) and isinstance(default, NodeAddress) and default.addresses:
        extra = [(e.ip, e.aliases) for e in cfg.network.extra_host_entries] if cfg is not None else []
        out[ETC_HOSTS_ID] = EtcFileSpec(
            contents=render_hosts(default.addresses[0].ip, hostname.hostname, hostname.domainname, extra),
            mode=ETC_FILE_MODE,
        )
    return out


# ---- files.EtcFileController ---------------------------------------------------------


def safe_file_name(id_: str) -> bool:
    """A spec ID names a file directly in the etc dir: no path separators, no dot names."""
    return bool(id_) and "/" not in id_ and "\0" not in id_ and id_ not in (".", "..")


class FilesEtcFileController(Controller):
    """EtcFileSpec ``<id>`` → ``<etc_dir>/<id>`` (only when the content differs) and
    EtcFileStatus ``<id>`` with ``specVersion``. Teardown keeps the file (see module doc)."""

    name = FILES_ETC_FILE_CONTROLLER

    def __init__(self, etc_dir: str) -> None:
        self.etc_dir = etc_dir
        self.retry: KernelRetry | None = None
        self._refused: set[str] = set()

    def inputs(self) -> Sequence[Input]:
        return [Input(FILES, ETC_FILE_SPEC_TYPE, InputKind.STRONG)]

    def outputs(self) -> Sequence[Output]:
        return [Output(FILES, ETC_FILE_STATUS_TYPE)]

    async def reconcile(self, ctx: Context) -> None:
        if self.retry is None:
            self.retry = KernelRetry(ctx.log)
        retry = self.retry
        statuses: dict[str, BaseModel] = {}
        releasing: list[str] = []
        for r in ctx.list(FILES, ETC_FILE_SPEC_TYPE):
            id_ = r.md.id
            if r.md.phase is Phase.TEARING_DOWN:
                releasing.append(id_)
                continue
            if self.name not in r.md.finalizers:
                r = ctx.add_finalizer(FILES, ETC_FILE_SPEC_TYPE, id_, self.name)
            spec = r.spec
            assert isinstance(spec, EtcFileSpec)
            if not safe_file_name(id_):
                if id_ not in self._refused:  # no retry: it cannot get better
                    self._refused.add(id_)
                    ctx.log.error("%r is not a file name: not written into %s", id_, self.etc_dir)
                continue
            path = os.path.join(self.etc_dir, id_)
            try:
                if write_if_changed(path, spec.contents, spec.mode):
                    ctx.log.info("wrote %s (spec version %d)", path, r.md.version)
            except OSError as e:
                retry.failed(id_, e)
                keep = ctx.get(FILES, ETC_FILE_STATUS_TYPE, id_)
                if keep is not None and keep.md.phase is Phase.RUNNING:
                    statuses[id_] = keep.spec  # still reports the version last written
                continue
            retry.succeeded(id_)
            # The version after our finalizer: the status matches the spec as stored now.
            statuses[id_] = EtcFileStatus(spec_version=str(r.md.version))
        ctx.reconcile_owned(FILES, ETC_FILE_STATUS_TYPE, statuses)
        for id_ in releasing:
            ctx.remove_finalizer(FILES, ETC_FILE_SPEC_TYPE, id_, self.name)
        retry.forget_except({r.md.id for r in ctx.list(FILES, ETC_FILE_SPEC_TYPE)})
        retry.schedule(ctx)
