"""A small command line for WireGuard devices through our backends (tests, debugging).

python -m netd.kernel.wireguard [--backend auto|kernel|userspace] [--log-dir DIR] CMD IFNAME [SPEC]

apply IFNAME SPEC   create the device if missing, then configure it to SPEC (a WireguardSpec
                    as JSON, camelCase keys, or @FILE); prints {"backend", "created",
                    "wrote", "pid"}: "wrote": false = nothing was sent
get IFNAME          prints the device (no private key), backend and wireguard-go pid
delete IFNAME       removes the device (and its wireguard-go)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from netd.kernel.wireguard import (
    UserspaceBackend,
    WireguardBackend,
    WireguardError,
    backend,
    select_backend,
)
from netd.resources.link import WireguardSpec


async def _backend(args: argparse.Namespace) -> WireguardBackend:
    kw = {"log_dir": Path(args.log_dir)} if args.log_dir else {}
    if args.backend == "auto":
        return await select_backend(args.ifname, **kw)
    return backend(args.backend, **kw)


def _pid(b: WireguardBackend, ifname: str) -> int | None:
    return b.pid(ifname) if isinstance(b, UserspaceBackend) else None


async def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m netd.kernel.wireguard")
    p.add_argument("--backend", choices=("auto", "kernel", "userspace"), default="auto")
    p.add_argument("--log-dir", default="")
    p.add_argument("cmd", choices=("apply", "get", "delete"))
    p.add_argument("ifname")
    p.add_argument("spec", nargs="?", default="")
    args = p.parse_args(argv)
    b = await _backend(args)
    out: dict[str, object] = {"backend": b.name}
    try:
        if args.cmd == "apply":
            raw = Path(args.spec[1:]).read_text() if args.spec.startswith("@") else args.spec
            spec = WireguardSpec.model_validate(json.loads(raw))
            created = not await b.exists(args.ifname)
            if created:
                await b.create(args.ifname)
            out |= {"created": created, "wrote": await b.configure(args.ifname, spec)}
            out["device"] = (await b.get(args.ifname)).to_json()
        elif args.cmd == "get":
            out |= (await b.get(args.ifname)).to_json()
        else:
            await b.delete(args.ifname)
        out["pid"] = _pid(b, args.ifname)
    except WireguardError as e:
        print(f"{args.ifname}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
