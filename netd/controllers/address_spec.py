"""AddressSpecController: merged AddressSpecs → kernel addresses (netd.md §5.2).

Each reconcile lists links and addresses and, per spec in ID order:

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
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import errno
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cosi import Context, Controller, Input, InputKind, Phase
from netd.kernel.applied import Applied
from netd.kernel.rtnl import (
    LINK_GROUPS,
    KernelAddress,
    KernelError,
    NotFound,
    Rtnl,
    send_gratuitous_arp,
    watch,
)
from netd.netip import format_prefix, parse_prefix
from netd.resources.address import ADDRESS_SPEC_TYPE, AddressSpec
from netd.resources.base import format_rfc3339
from netd.resources.enums import AddressFlags
from netd.resources.namespaces import NETWORK

from .retry import KernelRetry

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


def flags_scope_equal(spec: AddressSpec, k: KernelAddress) -> bool:
    assert spec.address is not None
    v = spec.address.version
    want = compared_flags(int(spec.flags), v)
    return (
        k.scope == int(spec.scope)
        and compared_flags(k.flags, v) == want
        and compared_flags(k.header_flags, v) == want & 0xFF
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
    spec: AddressSpec, kernel: KernelAddress | None, now: dt.datetime, recorded: dict[str, Any] | None = None
) -> Action:
    """What to do for a running spec, given the kernel address with the same IP and
    prefix length on its link (or None) and our Applied record of it (or None)."""
    want = wanted_lifetimes(spec, now)
    if want[0] == 0:
        return Action.EXPIRED
    if kernel is None:
        return Action.ADD
    if not flags_scope_equal(spec, kernel):
        return Action.REPLACE
    have = (kernel.valid, kernel.preferred)
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


def teardown_deletes(spec: AddressSpec, kernel: KernelAddress | None, recorded: bool) -> bool:
    """A tearing-down spec removes the kernel address only if we created it (recorded in
    applied.json). An address that was there before and merely matched the spec (the
    loopback's 127.0.0.1/8, an installer's address) was adopted, not owned: it stays."""
    return kernel is not None and recorded


def find_address(addresses: Sequence[KernelAddress], index: int, address: Any) -> KernelAddress | None:
    for a in addresses:
        if a.index == index and a.address == address:
            return a
    return None


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class _Spec:
    id: str
    spec: AddressSpec
    tearing_down: bool


class AddressSpecController(Controller):
    name = NAME

    def __init__(self, applied: Applied, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.applied = applied
        self.clock = clock
        self.rtnl: Rtnl | None = None
        self.retry: KernelRetry | None = None
        self._stale_done = False
        self._waiting: set[str] = set()  # specs whose link is missing (logged once)
        self._macs: dict[str, str] = {}
        self._relist = False  # stale addresses were removed: read the list again
        self._replaced = False  # an address was deleted and added again in this pass
        # spec ID → (spec, (scope, flags)) the kernel made of it although they differ
        self._accepted: dict[str, tuple[AddressSpec, tuple[int, int]]] = {}
        self.garp: Callable[[str, str, Any], None] = send_gratuitous_arp

    def inputs(self) -> Sequence[Input]:
        return [Input(NETWORK, ADDRESS_SPEC_TYPE, InputKind.STRONG)]

    async def run(self, ctx: Context) -> None:
        watcher = asyncio.create_task(watch(LINK_GROUPS, ctx.trigger), name=f"{self.name}.watch")
        try:
            await super().run(ctx)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            if self.rtnl is not None:
                self.rtnl.close()
                self.rtnl = None

    async def reconcile(self, ctx: Context) -> None:
        if self.retry is None:
            self.retry = KernelRetry(ctx.log)
        if self.rtnl is None:
            self.rtnl = Rtnl()
        retry, rtnl = self.retry, self.rtnl
        specs: list[_Spec] = []
        for r in ctx.list(NETWORK, ADDRESS_SPEC_TYPE):
            assert isinstance(r.spec, AddressSpec)
            tearing = r.md.phase is Phase.TEARING_DOWN
            if not tearing and self.name not in r.md.finalizers:
                ctx.add_finalizer(NETWORK, ADDRESS_SPEC_TYPE, r.md.id, self.name)
            specs.append(_Spec(r.md.id, r.spec, tearing))
        specs.sort(key=lambda s: s.id)
        link_list = await rtnl.links()
        links = {link.name: link.index for link in link_list}
        self._macs = {link.name: link.hardware_addr for link in link_list}
        addresses = await rtnl.addresses()
        now = self.clock()

        # 1. Specs going away: remove what is ours, release them.
        for s in specs:
            if s.tearing_down and await self._teardown(ctx, rtnl, retry, s, links, addresses):
                ctx.remove_finalizer(NETWORK, ADDRESS_SPEC_TYPE, s.id, self.name)

        # 2. Once per start: addresses recorded by an earlier run that no spec wants.
        if not self._stale_done:
            ids = {s.id for s in specs}
            ok = True
            for key, data in sorted(self.applied.items(APPLIED_KIND).items()):
                if key not in ids:
                    ok = await self._remove_stale(ctx, rtnl, retry, key, data, links, addresses) and ok
            self._stale_done = ok

        # 3. Running specs. The address list is read again after every write: deleting a
        # primary IPv4 address also deletes its secondaries, which must then be re-added.
        if any(s.tearing_down for s in specs) or self._relist:
            addresses = await rtnl.addresses()
            self._relist = False
        self._replaced = False
        for s in specs:
            if not s.tearing_down and await self._apply(ctx, rtnl, retry, s, links, addresses, now):
                addresses = await rtnl.addresses()
        if self._replaced:  # secondaries that came earlier in ID order may be gone: once more
            ctx.trigger()

        retry.forget_except({s.id for s in specs} | {f"stale {k}" for k in self.applied.items(APPLIED_KIND)})
        retry.schedule(ctx)

    async def _apply(
        self,
        ctx: Context,
        rtnl: Rtnl,
        retry: KernelRetry,
        s: _Spec,
        links: dict[str, int],
        addresses: list[KernelAddress],
        now: dt.datetime,
    ) -> bool:
        spec = s.spec
        if spec.address is None:
            retry.failed(s.id, "spec has no address")
            return False
        index = links.get(spec.link_name)
        if index is None:
            if s.id not in self._waiting:
                self._waiting.add(s.id)
                ctx.log.info("%s: waiting for link %s", s.id, spec.link_name)
            retry.succeeded(s.id)
            return False
        self._waiting.discard(s.id)
        kernel = find_address(addresses, index, spec.address)
        recorded = self.applied.items(APPLIED_KIND).get(s.id)
        action = plan_address(spec, kernel, now, recorded)
        accepted = self._accepted.get(s.id)
        if (
            action is Action.REPLACE
            and kernel is not None
            and accepted is not None
            and accepted == (spec, (kernel.scope, kernel.flags))
        ):
            action = Action.NONE
        if action in (Action.NONE, Action.EXPIRED):
            retry.succeeded(s.id)
            return False
        valid, preferred = wanted_lifetimes(spec, now)
        added = action is not Action.REFRESH
        try:
            if action is Action.REPLACE and kernel is not None:
                self._replaced = True
                with contextlib.suppress(NotFound):
                    await rtnl.delete_address(index, kernel.address)
            try:
                await rtnl.add_address(
                    index,
                    spec.address,
                    int(spec.scope),
                    int(spec.flags),
                    valid=valid,
                    preferred=preferred,
                    replace=action is Action.REFRESH,
                )
            except KernelError as e:
                if e.code != errno.EEXIST:  # ignored (netd.md §5.2)
                    raise
                added = False
        except KernelError as e:
            retry.failed(s.id, e)
            return action is Action.REPLACE  # the delete may have happened
        retry.succeeded(s.id)
        self.applied.add(APPLIED_KIND, s.id, lease_record(spec))
        self._accepted.pop(s.id, None)
        after = find_address(await rtnl.addresses(), index, spec.address)
        if after is not None and not flags_scope_equal(spec, after):
            self._accepted[s.id] = (spec, (after.scope, after.flags))
            ctx.log.warning(
                "%s: the kernel keeps scope %d flags %#x (spec: scope %d flags %#x); accepted",
                s.id,
                after.scope,
                after.flags,
                int(spec.scope),
                int(spec.flags),
            )
        ctx.log.info(
            "%s: address %s on %s (%s)", s.id, format_prefix(spec.address), spec.link_name, action.value
        )
        if added:
            self._announce(ctx, spec)
        return True

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

    async def _teardown(
        self,
        ctx: Context,
        rtnl: Rtnl,
        retry: KernelRetry,
        s: _Spec,
        links: dict[str, int],
        addresses: list[KernelAddress],
    ) -> bool:
        spec = s.spec
        index = links.get(spec.link_name)
        recorded = (APPLIED_KIND, s.id) in self.applied
        if index is not None and spec.address is not None:
            kernel = find_address(addresses, index, spec.address)
            if teardown_deletes(spec, kernel, recorded):
                assert kernel is not None
                try:
                    await rtnl.delete_address(index, kernel.address)
                except NotFound:
                    pass
                except KernelError as e:
                    retry.failed(s.id, e)
                    return False
                ctx.log.info("%s: address removed", s.id)
        retry.succeeded(s.id)
        self.applied.remove(APPLIED_KIND, s.id)
        self._waiting.discard(s.id)
        return True

    async def _remove_stale(
        self,
        ctx: Context,
        rtnl: Rtnl,
        retry: KernelRetry,
        key: str,
        data: dict[str, Any],
        links: dict[str, int],
        addresses: list[KernelAddress],
    ) -> bool:
        try:
            prefix = parse_prefix(str(data.get("address", "")))
        except ValueError:
            self.applied.remove(APPLIED_KIND, key)
            return True
        index = links.get(str(data.get("link", "")))
        kernel = find_address(addresses, index, prefix) if index is not None else None
        if index is not None and kernel is not None:
            try:
                await rtnl.delete_address(index, prefix)
            except NotFound:
                pass
            except KernelError as e:
                retry.failed(f"stale {key}", e)
                return False
            ctx.log.info("%s: address of an earlier configuration removed", key)
            self._relist = True
        retry.succeeded(f"stale {key}")
        self.applied.remove(APPLIED_KIND, key)
        return True
