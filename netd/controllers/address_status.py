"""AddressStatusController: every kernel address as an AddressStatus (netd.md §2.2), from
rtnetlink deltas."""

from __future__ import annotations

from cosi import Context, OutputKind
from netd.kernel import rtnl_codec as codec
from netd.kernel import rtnl_events as ev
from netd.kernel.netlink import (
    ADDRESS_GROUPS,
    AF_BRIDGE,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
)
from netd.resources.address import ADDRESS_STATUS_TYPE
from netd.resources.ids import address_id

from .netlink_status import NetlinkStatusController, address_record, link_record, publish_all


def _address_key(a: codec.AddressRecord) -> tuple[int, int, int, int]:
    ip = a.ip
    return (a.family, a.index, -1 if ip is None else int(ip), a.prefixlen)


class AddressStatusController(NetlinkStatusController):
    """Every kernel address (both families) as an AddressStatus, ID = AddressID.

    A shared output: the platform controller writes ``external/*`` ones, which
    this controller never touches.
    """

    name = "network.AddressStatusController"
    groups = ADDRESS_GROUPS
    output_type = ADDRESS_STATUS_TYPE
    output_kind = OutputKind.SHARED

    def __init__(self, rcvbuf: int | None = None) -> None:
        super().__init__(rcvbuf)
        self._msgs: dict[tuple[int, int, int, int], codec.AddressRecord] = {}

    async def resync(self, ctx: Context, family: int) -> None:
        self.resyncs += 1
        self.load_links(await ev.dump(RTM_GETLINK))
        dumped = await ev.dump(RTM_GETADDR)
        self.model.clear()
        self._msgs.clear()
        for _mtype, message in dumped:
            self._add(address_record(message))
        publish_all(ctx, self.output_type, self.model)

    def _add(self, rec: codec.AddressRecord) -> set[str]:
        key = _address_key(rec)
        self._msgs[key] = rec
        status = codec.address_status(rec, self.links.get(rec.index, ""))
        return self.model.add(key, address_id(status.link_name, status.address), status)

    def apply(self, mtype: int, message: bytes) -> set[str]:
        if mtype in (RTM_NEWADDR, RTM_DELADDR):
            rec = address_record(message)
            if mtype == RTM_NEWADDR:
                return self._add(rec)
            key = _address_key(rec)
            self._msgs.pop(key, None)
            return self.model.remove(key)
        if mtype in (RTM_NEWLINK, RTM_DELLINK):
            link = link_record(message)
            if link.family == AF_BRIDGE:
                return set()
            deleted = mtype == RTM_DELLINK
            renamed, _down = self.track_link(link, deleted)
            index = link.index
            mine = [k for k in self._msgs if k[1] == index]
            if deleted:
                for k in mine:
                    self._msgs.pop(k, None)
                return self.model.clear(mine)
            if renamed:  # the IDs contain the link name
                touched: set[str] = set()
                for k in mine:
                    touched |= self._add(self._msgs[k])
                return touched
        return set()


