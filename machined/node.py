"""The node: config at start, the runtime with every controller, and a clean stop.

Start order matters for "never lose connectivity": the status, config and
merge controllers run first and settle, so the desired state is complete
before any spec controller touches the kernel (a spec controller removes on
its first reconcile what only an old config had; it must not do so from a
half-built desired state).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field

from cluster.resources import register_all as register_cluster
from cosi import Runtime, State
from machined.api.configs import ApplyMode, ApplyResult, ConfigManager
from netd import tunables
from netd.config import ConfigError, LoadedConfig, load_config_file
from netd.kernel.applied import Applied
from netd.resources import register_all
from netd.resources.ids import DEVICES_ID
from netd.resources.machine_config import MACHINE_CONFIG_ID, MACHINE_CONFIG_TYPE, MachineConfigSpec
from netd.resources.namespaces import CONFIG, RUNTIME
from netd.resources.runtime_types import DEVICES_STATUS_TYPE, DevicesStatus

log = logging.getLogger("machined")

CONFIG_FILE = "config.yaml"  # where apply-config keeps the config when started without --config
TRY_FILE = "config.try.yaml"  # a pending `apply-config --mode try`
SETTLE_TIMEOUT = 10.0
STOP_TIMEOUT = 8.0  # SIGTERM → exit within 10 s (interface.md)


class StartError(Exception):
    """machined cannot start; ``lines`` go to stderr as they are."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass
class NodeOptions:
    config_path: str | None
    loaded: LoadedConfig
    cmdline: str = ""
    platform_config: str | None = None
    state_dir: str = "/var/lib/machined"
    etc_dir: str = "/etc"
    api: str = "/run/machined/machined.sock"
    leave: bool = False
    listen_tcp: str | None = None
    tls: tuple[str, str, str] | None = None
    etcd_endpoints: list[str] = field(default_factory=list)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> NodeOptions:
        try:
            tunables.check()  # a bad NETD_TUNABLES file refuses the start (decisions.md "Tunables")
        except tunables.TunablesError as e:
            raise StartError([f"machined: {e}"]) from None
        state_dir = args.state_dir
        try:
            os.makedirs(state_dir, mode=0o700, exist_ok=True)
        except OSError as e:
            raise StartError([f"machined: cannot create --state-dir {state_dir}: {e.strerror}"]) from None
        config_path = args.config or os.path.join(state_dir, CONFIG_FILE)
        pending = os.path.join(state_dir, TRY_FILE)
        if os.path.exists(pending):
            # A try that was never confirmed: the previous config wins (decisions.md).
            log.warning("a config applied in try mode was not confirmed before the restart: rolled back")
            os.unlink(pending)
        loaded = LoadedConfig()
        if args.config or os.path.exists(config_path):
            try:
                loaded = load_config_file(config_path)
            except ConfigError as e:
                raise StartError(e.lines()) from None
            for w in loaded.warnings:
                log.warning("%s", w)
        cmdline = args.cmdline or ""
        if args.cmdline_file:
            try:
                with open(args.cmdline_file, encoding="utf-8", errors="replace") as f:
                    cmdline = f.read().strip()
            except OSError as e:
                raise StartError(
                    [f"machined: cannot read --cmdline-file {args.cmdline_file}: {e.strerror}"]
                ) from None
        return cls(
            config_path=config_path,
            loaded=loaded,
            cmdline=cmdline,
            platform_config=args.platform_config,
            state_dir=state_dir,
            etc_dir=args.etc_dir,
            api=args.api,
            leave=args.leave,
            listen_tcp=args.listen_tcp,
            tls=(args.tls_cert, args.tls_key, args.tls_ca) if args.listen_tcp else None,
            etcd_endpoints=[u for u in args.etcd_endpoints.split(",") if u],
        )


def machine_config_spec(loaded: LoadedConfig) -> MachineConfigSpec:
    return MachineConfigSpec.from_loaded(loaded)


class Node:
    def __init__(self, opts: NodeOptions) -> None:
        self.opts = opts
        self.state = State()
        register_all(self.state)
        register_cluster(self.state)
        self.runtime = Runtime(self.state)
        self.applied = Applied.in_dir(opts.state_dir)
        self.stopping = asyncio.Event()
        # ---- API (machined/api): config at run time, reset ----
        self.configs = ConfigManager(
            opts.config_path or os.path.join(opts.state_dir, CONFIG_FILE),
            os.path.join(opts.state_dir, TRY_FILE),
            opts.loaded,
            self.set_config,
        )
        self.reset_done = False

    def set_config(self, loaded: LoadedConfig) -> None:
        """Publish a (new) machine config; the config controllers take it from there."""
        self.state.put(CONFIG, MACHINE_CONFIG_TYPE, MACHINE_CONFIG_ID, machine_config_spec(loaded))

    # ---- API (machined/api): apply-config, try/confirm/rollback, reset ----

    def apply_config(self, text: str, mode: ApplyMode, timeout: float) -> ApplyResult:
        """Validate and apply a config (``netctl apply-config``); ApplyError changes nothing."""
        return self.configs.apply(text, mode, timeout)

    def confirm_config(self) -> None:
        self.configs.confirm()

    async def reset(self) -> list[str]:
        """Undo the network config this node applied, then stop (``netctl reset``)."""
        from machined.api.reset import leave_cluster, reset_network

        await leave_cluster(self.runtime)  # first: AffiliateDelete while the network still works
        remaining = await reset_network(self.state, self.runtime)
        self.reset_done = True
        asyncio.get_running_loop().call_soon(self.stopping.set)
        return remaining

    async def start(self) -> None:
        from machined.wiring import cluster_controllers, kernel_controllers, source_controllers

        self.state.put(RUNTIME, DEVICES_STATUS_TYPE, DEVICES_ID, DevicesStatus(ready=True))
        self.set_config(self.opts.loaded)
        for c in source_controllers(self.opts.cmdline, self.opts.platform_config, self.opts.state_dir):
            self.runtime.register(c)
        self.runtime.start()
        if not await self.runtime.settle(timeout=SETTLE_TIMEOUT):
            log.warning("config controllers did not settle in %.0fs; applying what there is", SETTLE_TIMEOUT)
        for c in [
            *kernel_controllers(self.applied, self.opts.etc_dir),
            *cluster_controllers(self.opts.state_dir, self.applied, self.opts.etcd_endpoints),
        ]:
            self.runtime.register(c)
        self.runtime.start()
        log.info("node started")

    async def stop(self) -> None:
        """Stop the controllers; the kernel configuration stays as it is."""
        try:
            await asyncio.wait_for(self.runtime.stop(), STOP_TIMEOUT)
        except TimeoutError:
            log.error("controllers did not stop within %.0fs", STOP_TIMEOUT)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        from machined.api.server import ApiError, ApiServer

        api = ApiServer(self, self.opts.api, self.opts.listen_tcp, self.opts.tls)
        try:
            await api.start()  # before the controllers: a bad socket or TLS file touches nothing
        except ApiError as e:
            raise StartError([str(e)]) from None
        await self.start()
        await self.stopping.wait()
        log.info("stopping")
        if self.opts.leave and not self.reset_done:
            await self.reset()
        self.configs.close()
        await api.stop()
        await self.stop()
        return 0


def run_node(opts: NodeOptions) -> int:
    return asyncio.run(Node(opts).run())
