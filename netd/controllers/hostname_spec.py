"""HostnameSpecController: the merged HostnameSpec → HostnameStatus and the kernel (netd.md §5.4).

For each running HostnameSpec the controller writes HostnameStatus (same ID,
hostname and domainname) and sets the host name and NIS domain name of the
current UTS namespace (machined never runs in "container mode", decisions.md).
The status is written before the syscalls, as in the reference: it states what
the node is configured to be, and the files controller and NetworkStatus follow
it. A syscall error does not fail the reconcile (which would stall the statuses
of the other specs): it is logged once and retried with back-off (KernelRetry).

The kernel is only called when its value differs, so steady state writes
nothing. Teardown leaves the kernel's name as it is (nothing sensible to restore:
the reference does the same) and only destroys the status and releases the spec.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from cosi import Context, Controller, Input, InputKind, Output, Phase
from netd.kernel.uts import KERNEL_UTS, Uts
from netd.resources.hostname import HOSTNAME_SPEC_TYPE, HOSTNAME_STATUS_TYPE, HostnameSpec, HostnameStatus
from netd.resources.namespaces import NETWORK

from .retry import KernelRetry

NAME = "network.HostnameSpecController"


def apply_uts(uts: Uts, hostname: str, domainname: str) -> list[str]:
    """Set the names that differ from the kernel's; the names of the calls made (for tests/logs)."""
    done = []
    if uts.hostname() != hostname:
        uts.set_hostname(hostname)
        done.append("sethostname")
    if uts.domainname() != domainname:
        uts.set_domainname(domainname)
        done.append("setdomainname")
    return done


class HostnameSpecController(Controller):
    name = NAME

    def __init__(self, uts: Uts = KERNEL_UTS) -> None:
        self.uts = uts
        self.retry: KernelRetry | None = None

    def inputs(self) -> Sequence[Input]:
        return [Input(NETWORK, HOSTNAME_SPEC_TYPE, InputKind.STRONG)]

    def outputs(self) -> Sequence[Output]:
        return [Output(NETWORK, HOSTNAME_STATUS_TYPE)]

    async def reconcile(self, ctx: Context) -> None:
        if self.retry is None:
            self.retry = KernelRetry(ctx.log)
        retry = self.retry
        desired: dict[str, BaseModel] = {}
        releasing: list[str] = []
        for r in ctx.list(NETWORK, HOSTNAME_SPEC_TYPE):
            spec = r.spec
            assert isinstance(spec, HostnameSpec)
            if r.md.phase is Phase.TEARING_DOWN:
                releasing.append(r.md.id)
                continue
            if self.name not in r.md.finalizers:
                ctx.add_finalizer(NETWORK, HOSTNAME_SPEC_TYPE, r.md.id, self.name)
            desired[r.md.id] = HostnameStatus(hostname=spec.hostname, domainname=spec.domainname)
        # Statuses first (as the reference), then the kernel.
        ctx.reconcile_owned(NETWORK, HOSTNAME_STATUS_TYPE, desired)
        for id_, status in desired.items():
            assert isinstance(status, HostnameStatus)
            try:
                done = apply_uts(self.uts, status.hostname, status.domainname)
            except OSError as e:
                retry.failed(id_, e)
                continue
            retry.succeeded(id_)
            if done:
                ctx.log.info(
                    "%s: hostname %r, domainname %r (%s)",
                    id_,
                    status.hostname,
                    status.domainname,
                    ", ".join(done),
                )
        for id_ in releasing:
            ctx.remove_finalizer(NETWORK, HOSTNAME_SPEC_TYPE, id_, self.name)
        retry.forget_except(set(desired))
        retry.schedule(ctx)
