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

import asyncio
import datetime as dt
import enum
import errno
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cosi import Context, Controller, Input, InputKind, Phase
from netd.kernel import rtnl
from netd.kernel.applied import Applied
from netd.kernel.rtnl import (
    LINK_GROUPS,
    KernelError,
    NotFound,
    Rtnl,
    RtnlWatch,
    address_lifetimes,
    send_gratuitous_arp,
)
from netd.kernel.rtnl_batch import Request
from netd.kernel.rtnl_codec import RTM_DELADDR, AddressRecord
from netd.netip import Prefix, format_prefix, parse_prefix
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
    if not flags_scope_equal(spec, kernel):
        return Action.REPLACE
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
class _Spec:
    id: str
    spec: AddressSpec
    tearing_down: bool


@dataclass
class _Owner:
    """What one spec (or stale record) put in the batch."""

    key: str
    spec: _Spec | None = None
    action: Action = Action.NONE
    index: int = 0
    requests: list[int] = field(default_factory=list)
    add: int = -1  # its add request, if any


class AddressSpecController(Controller):
    name = NAME

    def __init__(self, applied: Applied, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.applied = applied
        self.clock = clock
        self.rtnl: Rtnl | None = None
        self._watch: RtnlWatch | None = None
        self.retry: KernelRetry | None = None
        self._stale_done = False
        self._waiting: set[str] = set()  # specs whose link is missing (logged once)
        self._macs: dict[str, str] = {}
        # spec ID → (spec, (scope, flags)) the kernel made of it although they differ
        self._accepted: dict[str, tuple[AddressSpec, tuple[int, int]]] = {}
        self.garp: Callable[[str, str, Any], None] = send_gratuitous_arp

    def inputs(self) -> Sequence[Input]:
        return [Input(NETWORK, ADDRESS_SPEC_TYPE, InputKind.STRONG)]

    async def run(self, ctx: Context) -> None:
        self._watch = RtnlWatch(LINK_GROUPS, ctx.trigger)
        watcher = asyncio.create_task(self._watch.run(), name=f"{self.name}.watch")
        try:
            await super().run(ctx)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            self._watch = None
            if self.rtnl is not None:
                self.rtnl.close()
                self.rtnl = None

    async def reconcile(self, ctx: Context) -> None:
        if self.retry is None:
            self.retry = KernelRetry(ctx.log)
        if self.rtnl is None:
            self.rtnl = Rtnl()
        retry, kernel = self.retry, self.rtnl
        specs: list[_Spec] = []
        for r in ctx.list(NETWORK, ADDRESS_SPEC_TYPE):
            assert isinstance(r.spec, AddressSpec)
            tearing = r.md.phase is Phase.TEARING_DOWN
            if not tearing and self.name not in r.md.finalizers:
                ctx.add_finalizer(NETWORK, ADDRESS_SPEC_TYPE, r.md.id, self.name)
            specs.append(_Spec(r.md.id, r.spec, tearing))
        ids = {s.id for s in specs}
        if self._watch is not None:
            self._watch.drain()  # what it has queued, the dumps below reflect
        link_list = await kernel.links()
        links = {link.name: link.index for link in link_list}
        self._macs = {link.name: link.hardware_addr for link in link_list}
        index = index_addresses(await kernel.addresses())
        recorded = self.applied.items(APPLIED_KIND)
        now = self.clock()
        requests: list[Request] = []
        doomed: set[AddressKey] = set()

        def delete(o: _Owner, key: AddressKey, address: Prefix) -> None:
            if key not in doomed:
                doomed.add(key)
                o.requests.append(len(requests))
                requests.append(rtnl.delete_address(key[0], address))

        # 1. Specs going away: remove what is ours, release them.
        released: list[_Spec] = []
        teardowns: list[_Owner] = []
        for s in specs:
            if not s.tearing_down:
                continue
            idx = links.get(s.spec.link_name)
            o = _Owner(s.id, spec=s)
            if idx is not None and s.spec.address is not None:
                key = address_key(idx, s.spec.address)
                if teardown_deletes(s.spec, index.get(key), s.id in recorded):
                    delete(o, key, s.spec.address)
            if o.requests:
                teardowns.append(o)
            else:
                released.append(s)

        # 2. Once per start: addresses recorded by an earlier run that no spec wants.
        stale: list[_Owner] = []
        if not self._stale_done:
            for rec_id, data in sorted(recorded.items()):
                if rec_id in ids:
                    continue
                o = _Owner(rec_id)
                try:
                    prefix = parse_prefix(str(data.get("address", "")))
                except ValueError:
                    stale.append(o)  # unreadable: just forget it
                    continue
                idx = links.get(str(data.get("link", "")))
                if idx is not None and address_key(idx, prefix) in index:
                    delete(o, address_key(idx, prefix), prefix)
                stale.append(o)

        # 3. Running specs.
        running: list[_Owner] = []
        for s in specs:
            if s.tearing_down:
                continue
            op = self._plan(ctx, retry, s, links, index, doomed, recorded, now)
            if op is None:
                continue
            spec = s.spec
            assert spec.address is not None
            key = address_key(op.index, spec.address)
            if op.action is Action.REPLACE:
                delete(op, key, spec.address)
            valid, preferred = wanted_lifetimes(spec, now)
            op.add = len(requests)
            op.requests.append(op.add)
            requests.append(
                rtnl.add_address(
                    op.index,
                    spec.address,
                    int(spec.scope),
                    int(spec.flags),
                    valid=valid,
                    preferred=preferred,
                    replace=op.action is Action.REFRESH,
                )
            )
            running.append(op)

        errors = await kernel.write(requests) if requests else []
        added = [o for o in running if self._failed(o, errors) is None and errors[o.add] is None]
        after = index_addresses(await kernel.addresses()) if added else {}

        with self.applied.batch():
            for s in released:
                self._release(ctx, retry, s)
            for o in teardowns:
                err = self._failed(o, errors)
                if err is not None:
                    retry.failed(o.key, err)
                    continue
                ctx.log.info("%s: address removed", o.key)
                assert o.spec is not None
                self._release(ctx, retry, o.spec)
            ok = True
            for o in stale:
                err = self._failed(o, errors)
                if err is not None:
                    retry.failed(f"stale {o.key}", err)
                    ok = False
                    continue
                if o.requests:
                    ctx.log.info("%s: address of an earlier configuration removed", o.key)
                retry.succeeded(f"stale {o.key}")
                self.applied.remove(APPLIED_KIND, o.key)
            if not self._stale_done:
                self._stale_done = ok
            for o in running:
                self._applied(ctx, retry, o, errors, after)

        # Deleting a primary IPv4 address deletes its secondaries too: once more, to add
        # back what went with it.
        if any(requests[i].type == RTM_DELADDR and e is None for i, e in enumerate(errors)):
            ctx.trigger()
        retry.forget_except(ids | {f"stale {k}" for k in self.applied.items(APPLIED_KIND)})
        retry.schedule(ctx)

    def _plan(
        self,
        ctx: Context,
        retry: KernelRetry,
        s: _Spec,
        links: dict[str, int],
        index: dict[AddressKey, AddressRecord],
        doomed: set[AddressKey],
        recorded: dict[str, dict[str, Any]],
        now: dt.datetime,
    ) -> _Owner | None:
        """What a running spec needs written (None: nothing)."""
        spec = s.spec
        if spec.address is None:
            retry.failed(s.id, "spec has no address")
            return None
        idx = links.get(spec.link_name)
        if idx is None:
            if s.id not in self._waiting:
                self._waiting.add(s.id)
                ctx.log.info("%s: waiting for link %s", s.id, spec.link_name)
            retry.succeeded(s.id)
            return None
        self._waiting.discard(s.id)
        key = address_key(idx, spec.address)
        k = index.get(key) if key not in doomed else None
        action = plan_address(spec, k, now, recorded.get(s.id))
        accepted = self._accepted.get(s.id)
        if (
            action is Action.REPLACE
            and k is not None
            and accepted is not None
            and accepted == (spec, (k.scope, k.all_flags))
        ):
            action = Action.NONE
        if action in (Action.NONE, Action.EXPIRED):
            retry.succeeded(s.id)
            return None
        return _Owner(s.id, spec=s, action=action, index=idx)

    @staticmethod
    def _failed(o: _Owner, errors: Sequence[KernelError | None]) -> KernelError | None:
        """The first error of the owner's requests that counts: a delete of an address
        already gone is fine, and so is an add that finds it there (netd.md §5.2)."""
        for i in o.requests:
            err = errors[i]
            if err is None or isinstance(err, NotFound):
                continue
            if i == o.add and err.code == errno.EEXIST:
                continue
            return err
        return None

    def _release(self, ctx: Context, retry: KernelRetry, s: _Spec) -> None:
        retry.succeeded(s.id)
        self.applied.remove(APPLIED_KIND, s.id)
        self._waiting.discard(s.id)
        self._accepted.pop(s.id, None)
        ctx.remove_finalizer(NETWORK, ADDRESS_SPEC_TYPE, s.id, self.name)

    def _applied(
        self,
        ctx: Context,
        retry: KernelRetry,
        o: _Owner,
        errors: Sequence[KernelError | None],
        after: dict[AddressKey, AddressRecord],
    ) -> None:
        assert o.spec is not None
        s, spec = o.spec, o.spec.spec
        assert spec.address is not None
        err = self._failed(o, errors)
        if err is not None:
            retry.failed(s.id, err)
            return
        retry.succeeded(s.id)
        self.applied.add(APPLIED_KIND, s.id, lease_record(spec))
        self._accepted.pop(s.id, None)
        k = after.get(address_key(o.index, spec.address))
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
            "%s: address %s on %s (%s)", s.id, format_prefix(spec.address), spec.link_name, o.action.value
        )
        if o.action is not Action.REFRESH and errors[o.add] is None:
            self._announce(ctx, spec)

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
