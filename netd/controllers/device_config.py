"""DeviceConfigController: machine.network.interfaces[] expanded against the current links.

Device selectors (netd.md §9) are resolved here, once, so every config
controller downstream sees plain devices with an ``interface`` name.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

from cosi import Context, Controller, Input, Output
from netd.config.models import Device, NetworkDeviceSelector
from netd.resources.device_config import DEVICE_CONFIG_SPEC_TYPE, DeviceConfigSpec
from netd.resources.ids import device_config_id
from netd.resources.link import LinkStatus
from netd.resources.namespaces import NETWORK

from .sources import LINK_STATUS_INPUT, MACHINE_CONFIG_INPUT, host_links, machine_config

log = logging.getLogger("network.DeviceConfigController")


@lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    """Only ``*`` is special; everything else is literal and case-sensitive."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def selector_matches(sel: NetworkDeviceSelector, link: LinkStatus) -> bool:
    """All non-empty fields must match; a selector with no fields matches nothing."""
    pairs = [
        (sel.hardware_addr, link.hardware_addr),
        (sel.pci_id, link.pci_id),
        (sel.driver, link.driver),
        (sel.bus_path, link.bus_path),
    ]
    given = [(p, v) for p, v in pairs if p]
    return bool(given) and all(_glob(p).fullmatch(v) is not None for p, v in given)


def expand_devices(
    devs: Sequence[Device], links: Iterable[tuple[str, LinkStatus]]
) -> dict[str, Device]:
    """DeviceConfigSpec ID → device with selectors resolved (netd.md §2.11, §9)."""
    ordered = sorted(links, key=lambda nl: nl[0])
    out: dict[str, Device] = {}
    for i, d in enumerate(devs):
        if d.bond is not None and d.bond.device_selectors:
            members: list[str] = []
            for sel in d.bond.device_selectors:
                members += [n for n, s in ordered if n != d.interface and selector_matches(sel, s)]
            if not members:
                log.warning("device %s: no link matches the bond's device selectors; skipped", d.interface)
                continue
            d = d.model_copy(update={"bond": d.bond.model_copy(update={"interfaces": members})})
        if d.device_selector is not None:
            sel = d.device_selector
            matched = [n for n, s in ordered if selector_matches(sel, s)]
            if not matched:
                log.warning("device %d: no link matches its device selector; skipped", i)
                continue
            for j, name in enumerate(matched):
                dev = d.model_copy(update={"interface": name, "device_selector": None})
                out[device_config_id(name, i, j if len(matched) > 1 else None)] = dev
            continue
        out[device_config_id(d.interface, i)] = d
    return out


class DeviceConfigController(Controller):
    name = "network.DeviceConfigController"

    def inputs(self) -> Sequence[Input]:
        return [MACHINE_CONFIG_INPUT, LINK_STATUS_INPUT]

    def outputs(self) -> Sequence[Output]:
        return [Output(NETWORK, DEVICE_CONFIG_SPEC_TYPE)]

    async def reconcile(self, ctx: Context) -> None:
        mc = machine_config(ctx)
        devs = mc.config.machine.network.interfaces if mc is not None and mc.config is not None else []
        if mc is not None:  # a LinkConfig is one more device, after the v1.6 ones (routing-rules.md §5)
            devs = [*devs, *(link.as_device() for link in mc.link_configs)]
        expanded = expand_devices(devs, host_links(ctx))
        ctx.reconcile_owned(
            NETWORK,
            DEVICE_CONFIG_SPEC_TYPE,
            {id_: DeviceConfigSpec(device=d) for id_, d in expanded.items()},
        )
