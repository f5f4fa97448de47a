"""AddressSpecController: merged AddressSpecs → kernel addresses (netd.md §5.2).

Each reconcile lists links and addresses (indexed once by link, IP and prefix
length: a pass is O(specs + kernel addresses)) and, per spec in ID order:

* running: resolve the link by name (missing → wait: a link watch triggers
  the next pass when it appears). An equal kernel address (same IP and prefix
  length on that link, same scope, same flags, same kind of lifetime) is
  adopted: nothing is written. A differing one is deleted and added again
  (RTM_NEWADDR create+exclusive; EEXIST is ignored). A lease (``validUntil`` /
  ``preferredUntil``, decisions.md) becomes kernel lifetimes; the kernel counts
  them down itself, so the remaining seconds always differ a little from the
  spec: they are rewritten (in place, RTM_NEWADDR replace) only when the spec
  changed — the recorded until-times differ, or for an address we did not
  record, the remaining times differ by more than a few seconds.
* tearingDown: delete the address if it is ours (recorded) or matches the
  spec, then release the spec.

Flags are compared without the bits the kernel manages itself: ``tentative``
(DAD in progress), ``permanent`` (set by the kernel exactly when the valid
lifetime is infinite), ``deprecated`` (preferred lifetime over) and, for IPv4,
``secondary`` (bit 0x01, shared with ``temporary``); for IPv6 only the flags
the kernel accepts from userspace count. Comparing those bits would make a
spec without ``permanent`` (or with a lease, or a second address in a subnet)
rewrite its address on every pass. Should the kernel still keep an address
differently from its spec after a rewrite, the result is accepted (a warning,
once) instead of rewriting it on every pass.

Kernel errors are per spec: logged once and retried with back-off
(KernelRetry), the other specs go on. What we add is recorded in ``Applied``
(kind ``address``, key AddressID); on the first reconcile after a start the
recorded addresses that no spec wants any more (a changed config) are removed.
Addresses no spec of ours created are never touched.

With ``announceWithARP`` (VIPs), an IPv4 address that was actually (re)added
is announced with one gratuitous ARP request when the link has a 6-byte MAC;
a failure is only logged.

All writes of a pass go to the kernel as ONE batch (netd.kernel.rtnl_batch):
removals of tearing-down specs, then of stale records, then per running spec
its delete (a replace) and add, in that order; each request's errno comes back
to its spec. Deleting a primary IPv4 address also deletes its secondaries, so
a pass that deleted anything asks for one more pass, which re-adds what went
with it. The Applied records of a pass are written to disk once.
"""

from __future__ import annotations

import datetime as dt
import enum
import errno
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cosi import Context
from netd.kernel import rtnl
from netd.kernel.applied import Applied
from netd.kernel.netlink import LINK_GROUPS, RTM_DELADDR
from netd.kernel.rtnl import (
    KernelError,
    NotFound,
    Rtnl,
    address_lifetimes,
    send_gratuitous_arp,
)
from netd.kernel.rtnl_batch import Request
from netd.kernel.rtnl_codec import AddressRecord
from netd.netip import Prefix, format_prefix, parse_prefix
from netd.resources.address import ADDRESS_SPEC_TYPE, AddressSpec
from netd.resources.base import format_rfc3339
from netd.resources.enums import AddressFlags

from .kernel_spec import Batch, KernelSpecController, Owner, SpecItem

NAME = "network.AddressSpecController"
APPLIED_KIND = "address"

#: Seconds the remaining lifetimes of an unrecorded address may differ from the spec's
#: (the kernel and we both truncate to whole seconds at different instants).
LIFETIME_SLACK = 2

#: Flags the kernel sets by itself; never compared.
KERNEL_MANAGED_FLAGS = AddressFlags.TENTATIVE | AddressFlags.PERMANENT | AddressFlags.DEPRECATED
#: The IPv6 flags the kernel takes from userspace (inet6_rtm_newaddr); others are dropped.
IPV6_SETTABLE_FLAGS = (
    AddressFlags.NODAD
    | AddressFlags.HOMEADDRESS
    | AddressFlags.MNGMTMPADDR
    | AddressFlags.NOPREFIXROUTE
    | AddressFlags.MCAUTOJOIN
    | AddressFlags.OPTIMISTIC
)


class Action(enum.Enum):
    NONE = "none"  # adopted / equal: write nothing
    ADD = "add"  # no such address yet
    REPLACE = "replace"  # flags or scope differ: delete, then add
    REFRESH = "refresh"  # only the lease changed: update lifetimes in place
    EXPIRED = "expired"  # the lease is over: nothing to add (the kernel drops the address)


#: IFA_F_SECONDARY: the kernel marks every IPv4 address after the first of a subnet so
#: (the same bit as IFA_F_TEMPORARY, which only IPv6 uses).
IPV4_SECONDARY = 0x01


def compared_flags(flags: int, version: int) -> int:
    """The part of an address's flags that the comparison looks at."""
    if version == 6:
        return flags & int(IPV6_SETTABLE_FLAGS)
    return flags & 0xFFFFFFFF & ~(int(KERNEL_MANAGED_FLAGS) | IPV4_SECONDARY)


def wanted_lifetimes(spec: AddressSpec, now: dt.datetime) -> tuple[int | None, int | None]:
    """(valid, preferred) seconds left as the kernel will report them: the preferred
    lifetime never exceeds the valid one (the kernel refuses that), None = forever."""
    valid, preferred = spec.lifetimes(now)
    if valid is not None:
        preferred = valid if preferred is None else min(preferred, valid)
    return valid, preferred


def lease_record(spec: AddressSpec) -> dict[str, Any]:
    """What the Applied record keeps: enough to find the address again, and the lease
    the kernel lifetimes were computed from."""
    return {
        "link": spec.link_name,
        "address": format_prefix(spec.address) if spec.address is not None else "",
        "validUntil": format_rfc3339(spec.valid_until),
        "preferredUntil": format_rfc3339(spec.preferred_until),
    }


def flags_scope_equal(spec: AddressSpec, k: AddressRecord) -> bool:
    assert spec.address is not None
    v = spec.address.version
    want = compared_flags(int(spec.flags), v)
    return (
        k.scope == int(spec.scope)
        and compared_flags(k.all_flags, v) == want
        and compared_flags(k.flags, v) == want & 0xFF
    )


def lifetimes_differ(
    want: tuple[int | None, int | None], have: tuple[int | None, int | None], slack: int = LIFETIME_SLACK
) -> bool:
    for w, h in zip(want, have, strict=True):
        if (w is None) != (h is None):
            return True
        if w is not None and h is not None and abs(w - h) > slack:
            return True
    return False


def plan_address(
    spec: AddressSpec, kernel: AddressRecord | None, now: dt.datetime, recorded: dict[str, Any] | None = None
) -> Action:
    """What to do for a running spec, given the kernel address with the same IP and
    prefix length on its link (or None) and our Applied record of it (or None)."""
    want = wanted_lifetimes(spec, now)
    if want[0] == 0:
        return Action.EXPIRED
    if kernel is None:
        return Action.ADD
    if not flags_scope_equal(spec, kernel) or (kernel.rt_priority or 0) != spec.priority:
        return Action.REPLACE  # (the prefix route's metric is fixed when the address is added)
    have = address_lifetimes(kernel)
    if (want[0] is None) != (have[0] is None) or (want[1] is None) != (have[1] is None):
        return Action.REFRESH
    if want == (None, None):
        return Action.NONE
    if recorded is not None:
        same_lease = recorded.get("validUntil", "") == format_rfc3339(spec.valid_until) and recorded.get(
            "preferredUntil", ""
        ) == format_rfc3339(spec.preferred_until)
        return Action.NONE if same_lease else Action.REFRESH
    return Action.REFRESH if lifetimes_differ(want, have) else Action.NONE


def teardown_deletes(spec: AddressSpec, kernel: AddressRecord | None, recorded: bool) -> bool:
    """A tearing-down spec removes the kernel address only if we created it (recorded in
    applied.json). An address that was there before and merely matched the spec (the
    loopback's 127.0.0.1/8, an installer's address) was adopted, not owned: it stays."""
    return kernel is not None and recorded


#: (link index, IP, prefix length).
AddressKey = tuple[int, Any, int]


def address_key(index: int, address: Prefix) -> AddressKey:
    return (index, address.ip, address.network.prefixlen)


def index_addresses(addresses: Iterable[AddressRecord]) -> dict[AddressKey, AddressRecord]:
    """Kernel addresses by link, IP and prefix length, built once per reconcile."""
    return {(a.index, a.ip, a.prefixlen): a for a in addresses}


def find_address(addresses: Iterable[AddressRecord], index: int, address: Prefix) -> AddressRecord | None:
    """The kernel address with ``address``'s IP and prefix length on link ``index``."""
    return index_addresses(addresses).get(address_key(index, address))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class AddressView:
    """One pass's reading of the kernel: links (index and MAC by name), addresses by key."""

    links: dict[str, int]
    macs: dict[str, str]
    index: dict[AddressKey, AddressRecord]


@dataclass
class _Planned:
    action: Action
    index: int
    add: int = -1  # its add request


class AddressSpecController(KernelSpecController[AddressSpec, AddressView]):
    name = NAME
    spec_type = ADDRESS_SPEC_TYPE
    spec_model = AddressSpec
    applied_kind = APPLIED_KIND
    groups = LINK_GROUPS
    what = "address"

    def __init__(self, applied: Applied, clock: Callable[[], dt.datetime] = utcnow) -> None:
        super().__init__(applied)
        self.clock = clock
        self._macs: dict[str, str] = {}
        self._now = clock()
        # spec ID → (spec, (scope, flags)) the kernel made of it although they differ
        self._accepted: dict[str, tuple[AddressSpec, tuple[int, int]]] = {}
        self.garp: Callable[[str, str, Any], None] = send_gratuitous_arp

    async def observe(self, kernel: Rtnl) -> AddressView:
        link_list = await kernel.links()
        links = {link.name: link.index for link in link_list}
        self._macs = {link.name: link.hardware_addr for link in link_list}
        self._now = self.clock()
        return AddressView(links, self._macs, index_addresses(await kernel.addresses()))

    def teardown(
        self,
        item: SpecItem[AddressSpec],
        obs: AddressView,
        batch: Batch,
        owner: Owner[AddressSpec],
        recorded: bool,
    ) -> None:
        idx = obs.links.get(item.spec.link_name)
        address = item.spec.address
        if idx is not None and address is not None:
            key = address_key(idx, address)
            if teardown_deletes(item.spec, obs.index.get(key), recorded):
                batch.delete(owner, key, rtnl.delete_address(idx, address))

    def stale(
        self, rec_id: str, data: dict[str, Any], obs: AddressView, batch: Batch, owner: Owner[AddressSpec]
    ) -> None:
        try:
            prefix = parse_prefix(str(data.get("address", "")))
        except ValueError:
            return  # unreadable: just forget it
        idx = obs.links.get(str(data.get("link", "")))
        if idx is not None and address_key(idx, prefix) in obs.index:
            batch.delete(owner, address_key(idx, prefix), rtnl.delete_address(idx, prefix))

    def plan(
        self,
        ctx: Context,
        item: SpecItem[AddressSpec],
        obs: AddressView,
        batch: Batch,
        recorded: dict[str, Any] | None,
    ) -> Owner[AddressSpec] | str | None:
        spec = item.spec
        if spec.address is None:
            return "spec has no address"
        idx = obs.links.get(spec.link_name)
        if idx is None:
            self.waiting_for_link(ctx, item.id, spec.link_name)
            return None
        key = address_key(idx, spec.address)
        k = obs.index.get(key) if key not in batch.doomed else None
        action = plan_address(spec, k, self._now, recorded)
        accepted = self._accepted.get(item.id)
        if (
            action is Action.REPLACE
            and k is not None
            and accepted is not None
            and accepted == (spec, (k.scope, k.all_flags))
        ):
            action = Action.NONE
        if action in (Action.NONE, Action.EXPIRED):
            return None
        o: Owner[AddressSpec] = Owner(item.id, item=item, data=_Planned(action, idx))
        if action is Action.REPLACE:
            batch.delete(o, key, rtnl.delete_address(idx, spec.address))
        valid, preferred = wanted_lifetimes(spec, self._now)
        o.data.add = batch.add(
            o,
            rtnl.add_address(
                idx,
                spec.address,
                int(spec.scope),
                int(spec.flags),
                valid=valid,
                preferred=preferred,
                replace=action is Action.REFRESH,
                priority=spec.priority,
            ),
        )
        return o

    def intent(self, owner: Owner[AddressSpec]) -> dict[str, Any] | None:
        assert owner.item is not None
        return lease_record(owner.item.spec)

    def reclaim(self, item: SpecItem[AddressSpec], obs: AddressView) -> dict[str, Any] | None:
        record = lease_record(item.spec)
        return record if self.exists(item.id, record, obs) else None

    def exists(self, rec_id: str, data: dict[str, Any], obs: AddressView) -> bool:
        try:
            prefix = parse_prefix(str(data.get("address", "")))
        except ValueError:
            return False
        idx = obs.links.get(str(data.get("link", "")))
        return idx is not None and address_key(idx, prefix) in obs.index

    def ignorable(self, owner: Owner[AddressSpec], i: int, err: KernelError) -> bool:
        """A delete of an address already gone is fine, and so is an add that finds it
        there (netd.md §5.2)."""
        if isinstance(err, NotFound):
            return True
        return owner.data is not None and i == owner.data.add and err.code == errno.EEXIST

    async def observe_after(self, kernel: Rtnl, written: list[Owner[AddressSpec]]) -> Any:
        return index_addresses(await kernel.addresses())

    def commit(
        self, ctx: Context, owner: Owner[AddressSpec], after: Any, errors: Sequence[KernelError | None]
    ) -> dict[str, Any] | None:
        assert owner.item is not None
        s, spec, planned = owner.item, owner.item.spec, owner.data
        assert spec.address is not None
        self._accepted.pop(s.id, None)
        k = (after or {}).get(address_key(planned.index, spec.address))
        if k is not None and not flags_scope_equal(spec, k):
            self._accepted[s.id] = (spec, (k.scope, k.all_flags))
            ctx.log.warning(
                "%s: the kernel keeps scope %d flags %#x (spec: scope %d flags %#x); accepted",
                s.id,
                k.scope,
                k.all_flags,
                int(spec.scope),
                int(spec.flags),
            )
        ctx.log.info(
            "%s: address %s on %s (%s)",
            s.id,
            format_prefix(spec.address),
            spec.link_name,
            planned.action.value,
        )
        if planned.action is not Action.REFRESH and errors[planned.add] is None:
            self._announce(ctx, spec)
        return lease_record(spec)

    def forget(self, spec_id: str) -> None:
        self._accepted.pop(spec_id, None)

    def after_pass(
        self, ctx: Context, requests: Sequence[Request], errors: Sequence[KernelError | None]
    ) -> None:
        # Deleting a primary IPv4 address deletes its secondaries too: once more, to add
        # back what went with it.
        if any(requests[i].type == RTM_DELADDR and e is None for i, e in enumerate(errors)):
            ctx.trigger()

    def _announce(self, ctx: Context, spec: AddressSpec) -> None:
        """Gratuitous ARP after an IPv4 address with ``announceWithARP`` was (re)added."""
        if not spec.announce_with_arp or spec.address is None or spec.address.version != 4:
            return
        mac = self._macs.get(spec.link_name, "")
        if len(mac) != 17:  # "aa:bb:cc:dd:ee:ff": only Ethernet-like links
            return
        try:
            self.garp(spec.link_name, mac, spec.address.ip)
        except (OSError, ValueError) as e:
            ctx.log.warning("%s: gratuitous ARP for %s failed: %s", spec.link_name, spec.address.ip, e)
