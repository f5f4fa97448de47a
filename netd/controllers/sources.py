"""What the config controllers share: the kernel command line, the expanded
devices of the machine config, and the base class of a layered config source.

A config controller is "read inputs → compute the specs each layer wants →
write them to ``network-config`` under ``<layer>/<id>`` → destroy its own specs
that are no longer wanted" (netd.md §4.1). The computing part is pure functions
in each family module; this base class does the writing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from pydantic import BaseModel

from cosi import Context, Controller, Input, Output, OutputKind
from netd.config.cmdline import CmdlineResult, HostLink, parse_cmdline
from netd.config.models import Device
from netd.resources.device_config import DEVICE_CONFIG_SPEC_TYPE, DeviceConfigSpec
from netd.resources.enums import LinkType
from netd.resources.ids import layered_id
from netd.resources.link import LINK_STATUS_TYPE, LinkStatus
from netd.resources.machine_config import MACHINE_CONFIG_ID, MACHINE_CONFIG_TYPE, MachineConfigSpec
from netd.resources.namespaces import CONFIG, NETWORK, NETWORK_CONFIG

log = logging.getLogger("network.cmdline")

LINK_STATUS_INPUT = Input(NETWORK, LINK_STATUS_TYPE)
DEVICE_CONFIG_INPUT = Input(NETWORK, DEVICE_CONFIG_SPEC_TYPE)
MACHINE_CONFIG_INPUT = Input(CONFIG, MACHINE_CONFIG_TYPE, id=MACHINE_CONFIG_ID)


class Cmdline:
    """The kernel command line of this boot, parsed against the current links.

    Parsing is cheap and depends on the links (``enx<MAC>``, the default link,
    bond ``primary``), so each reconcile re-parses; the result is cached per link
    set and an error is logged once, not on every reconcile.
    """

    def __init__(self, text: str = "") -> None:
        self.text = text
        self._cache: tuple[tuple[HostLink, ...], CmdlineResult] | None = None
        self._logged: set[str] = set()

    def parse(self, links: Iterable[tuple[str, LinkStatus]]) -> CmdlineResult:
        host = tuple(
            HostLink(name, s.hardware_addr, s.type == LinkType.LOOPBACK, s.index) for name, s in links
        )
        if self._cache is None or self._cache[0] != host:
            self._cache = (host, parse_cmdline(self.text, list(host)))
        result = self._cache[1]
        if result.error is not None and result.error not in self._logged:
            self._logged.add(result.error)
            log.error("kernel command line ignored for networking: %s", result.error)
        return result


def host_links(ctx: Context) -> list[tuple[str, LinkStatus]]:
    out: list[tuple[str, LinkStatus]] = []
    for r in ctx.list(NETWORK, LINK_STATUS_TYPE):
        assert isinstance(r.spec, LinkStatus)
        out.append((r.id, r.spec))
    return out


def machine_config(ctx: Context) -> MachineConfigSpec | None:
    r = ctx.get(CONFIG, MACHINE_CONFIG_TYPE, MACHINE_CONFIG_ID)
    if r is None:
        return None
    assert isinstance(r.spec, MachineConfigSpec)
    return r.spec


def devices(ctx: Context) -> list[Device]:
    """The expanded machine-config devices, in DeviceConfigSpec ID order (ignored ones included).

    The specs hold the typed devices validated at load time: nothing is parsed here.
    """
    out: list[Device] = []
    for r in ctx.list(NETWORK, DEVICE_CONFIG_SPEC_TYPE):
        assert isinstance(r.spec, DeviceConfigSpec)
        out.append(r.spec.device)
    return out


def ignored_devices(devs: Iterable[Device]) -> set[str]:
    return {d.interface for d in devs if d.ignore}


class LayeredConfigController(Controller):
    """Writes the specs of one type that its sources want into ``network-config``."""

    spec_type: str = ""

    def __init__(self, cmdline: Cmdline | None = None) -> None:
        self.cmdline = cmdline or Cmdline()

    def inputs(self) -> Sequence[Input]:
        """Most sources read the expanded devices, and the links (for the command line)."""
        return [DEVICE_CONFIG_INPUT, LINK_STATUS_INPUT]

    def outputs(self) -> Sequence[Output]:
        return [Output(NETWORK_CONFIG, self.spec_type, OutputKind.SHARED)]

    def desired(self, ctx: Context) -> dict[str, BaseModel] | None:
        """Layered ID → spec; None skips this round (no writes, no cleanup)."""
        raise NotImplementedError

    async def reconcile(self, ctx: Context) -> None:
        want = self.desired(ctx)
        if want is not None:
            ctx.reconcile_owned(NETWORK_CONFIG, self.spec_type, want)


def layered(specs: Iterable[BaseModel], layer: str, id_of: str = "id") -> dict[str, BaseModel]:
    """Key specs by ``<layer>/<natural id>``; a later spec with the same id wins."""
    out: dict[str, BaseModel] = {}
    for s in specs:
        out[layered_id(layer, getattr(s, id_of)())] = s
    return out
