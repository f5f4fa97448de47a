"""StatusController: NetworkStatus ``status`` (netd.md §7.2)."""

from __future__ import annotations

from cosi import Context, Controller, Input, Output
from cosi.resource import Event, EventType
from netd.resources.files import ETC_FILE_STATUS_TYPE
from netd.resources.hostname import HOSTNAME_STATUS_TYPE
from netd.resources.ids import (
    ETC_HOSTS_ID,
    ETC_RESOLV_CONF_ID,
    HOSTNAME_ID,
    NETWORK_STATUS_ID,
    NODE_ADDRESS_CURRENT_ID,
)
from netd.resources.namespaces import FILES, NETWORK
from netd.resources.nodeaddress import NODE_ADDRESS_TYPE
from netd.resources.route import ROUTE_STATUS_TYPE
from netd.resources.status import NETWORK_STATUS_TYPE, NetworkStatus


def network_status(
    current_addresses: int, has_default_route: bool, has_hostname: bool, etc_files: bool
) -> NetworkStatus:
    return NetworkStatus(
        address_ready=current_addresses > 0,
        connectivity_ready=has_default_route,
        hostname_ready=has_hostname,
        etc_files_ready=etc_files,
    )


class StatusController(Controller):
    """NetworkStatus ``status`` (netd.md §7.2). Connectivity is "a default route
    exists" (ProbeStatus is not supported yet)."""

    name = "network.StatusController"

    def inputs(self) -> list[Input]:
        return [
            Input(NETWORK, NODE_ADDRESS_TYPE, id=NODE_ADDRESS_CURRENT_ID),
            Input(NETWORK, ROUTE_STATUS_TYPE),
            Input(NETWORK, HOSTNAME_STATUS_TYPE, id=HOSTNAME_ID),
            Input(FILES, ETC_FILE_STATUS_TYPE),
        ]

    def outputs(self) -> list[Output]:
        return [Output(NETWORK, NETWORK_STATUS_TYPE)]

    def __init__(self) -> None:
        # IDs of RouteStatus resources without a destination, kept from state events so
        # that a reconcile is O(1) instead of a scan of every route (10,000 on a big node).
        self._defaults: set[str] = set()

    def _on_route(self, ev: Event) -> None:
        r = ev.resource
        if r is None:
            return
        if ev.type is not EventType.DESTROYED and getattr(r.spec, "dst", 1) is None:
            self._defaults.add(r.id)
        else:
            self._defaults.discard(r.id)

    async def run(self, ctx: Context) -> None:
        unsubscribe = ctx.state.subscribe(NETWORK, ROUTE_STATUS_TYPE, self._on_route)
        self._defaults = {
            r.id for r in ctx.list(NETWORK, ROUTE_STATUS_TYPE) if getattr(r.spec, "dst", 1) is None
        }
        try:
            await super().run(ctx)
        finally:
            unsubscribe()

    async def reconcile(self, ctx: Context) -> None:
        current = ctx.get(NETWORK, NODE_ADDRESS_TYPE, NODE_ADDRESS_CURRENT_ID)
        n_current = len(getattr(current.spec, "addresses", ()) or ()) if current is not None else 0
        hostname = ctx.get(NETWORK, HOSTNAME_STATUS_TYPE, HOSTNAME_ID) is not None
        etc = all(
            ctx.get(FILES, ETC_FILE_STATUS_TYPE, i) is not None for i in (ETC_HOSTS_ID, ETC_RESOLV_CONF_ID)
        )
        status = network_status(n_current, bool(self._defaults), hostname, etc)
        ctx.put(NETWORK, NETWORK_STATUS_TYPE, NETWORK_STATUS_ID, status)


