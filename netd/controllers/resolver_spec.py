"""ResolverSpecController and TimeServerSpecController (netd.md §5.5).

Pure copies: each running merged spec becomes a status with the same ID and the
same list. Nothing is written to disk here: resolv.conf comes from the EtcFile
pipeline (§5.6) and NTP clients read TimeServerStatus. The controllers hold a
finalizer on their specs so the merge controllers destroy a spec only after its
status is gone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import BaseModel

from cosi import Context, Controller, Input, InputKind, Output, Phase
from netd.resources.namespaces import NETWORK
from netd.resources.resolver import RESOLVER_SPEC_TYPE, RESOLVER_STATUS_TYPE, ResolverSpec, ResolverStatus
from netd.resources.timeserver import (
    TIME_SERVER_SPEC_TYPE,
    TIME_SERVER_STATUS_TYPE,
    TimeServerSpec,
    TimeServerStatus,
)


class CopySpecController(Controller):
    """Running spec → status (same ID) through ``to_status``; tearingDown → status
    destroyed, finalizer released."""

    spec_type: str = ""
    status_type: str = ""

    def to_status(self, spec: BaseModel) -> BaseModel:
        raise NotImplementedError

    def inputs(self) -> Sequence[Input]:
        return [Input(NETWORK, self.spec_type, InputKind.STRONG)]

    def outputs(self) -> Sequence[Output]:
        return [Output(NETWORK, self.status_type)]

    async def reconcile(self, ctx: Context) -> None:
        desired: dict[str, BaseModel] = {}
        releasing: list[str] = []
        for r in ctx.list(NETWORK, self.spec_type):
            if r.md.phase is Phase.TEARING_DOWN:
                releasing.append(r.md.id)
                continue
            if self.name not in r.md.finalizers:
                ctx.add_finalizer(NETWORK, self.spec_type, r.md.id, self.name)
            desired[r.md.id] = self.to_status(r.spec)
        ctx.reconcile_owned(NETWORK, self.status_type, desired)
        for id_ in releasing:
            ctx.remove_finalizer(NETWORK, self.spec_type, id_, self.name)


class ResolverSpecController(CopySpecController):
    name = "network.ResolverSpecController"
    spec_type = RESOLVER_SPEC_TYPE
    status_type = RESOLVER_STATUS_TYPE

    def to_status(self, spec: BaseModel) -> BaseModel:
        assert isinstance(spec, ResolverSpec)
        return ResolverStatus(dns_servers=list(spec.dns_servers))


class TimeServerSpecController(CopySpecController):
    name = "network.TimeServerSpecController"
    spec_type = TIME_SERVER_SPEC_TYPE
    status_type = TIME_SERVER_STATUS_TYPE

    def to_status(self, spec: BaseModel) -> BaseModel:
        assert isinstance(spec, TimeServerSpec)
        return TimeServerStatus(time_servers=list(spec.time_servers))


SPEC_COPY_CONTROLLERS: tuple[Callable[[], CopySpecController], ...] = (
    ResolverSpecController,
    TimeServerSpecController,
)
