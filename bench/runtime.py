"""Runtime throughput and watch latency.

10,000 creates, 10,000 updates and 10,000 deletes through the state while 10
watchers each read every event's resource; the writer yields to the event loop
every 100 writes, as a controller writing a batch would. Prints a table, then
the two goal lines (writes/s >= 20,000; p99 event delivery < 10 ms).
"""

from __future__ import annotations

import asyncio
import statistics
import time

from pydantic import BaseModel

from cosi import State

N = 10_000
WATCHERS = 10
YIELD_EVERY = 100
NS, TYPE = "bench", "Things.bench.dev"


class ThingSpec(BaseModel):
    address: str
    metric: int


async def watcher_task(state: State, latencies: list[float], total: int) -> None:
    seen = 0
    with state.watch(NS, TYPE, bootstrap=False) as w:
        while seen < total:
            for ev in await w.next_batch():
                now = time.monotonic()
                assert ev.resource is not None
                _ = ev.resource.spec.address  # read the resource, as a real watcher would
                latencies.append(now - ev.at)
                seen += 1


async def main() -> None:
    state = State()
    specs = [ThingSpec(address=f"10.{i >> 8 & 255}.{i & 255}.1/24", metric=i) for i in range(N)]
    updated = [ThingSpec(address=s.address, metric=s.metric + 1) for s in specs]
    latencies: list[float] = []
    total = 3 * N
    tasks = [asyncio.create_task(watcher_task(state, latencies, total)) for _ in range(WATCHERS)]
    await asyncio.sleep(0)
    ids = [f"id-{i:05d}" for i in range(N)]
    t0 = time.perf_counter()
    writes = 0
    for phase in ("create", "update", "delete"):
        for i, id_ in enumerate(ids):
            if phase == "create":
                state.put(NS, TYPE, id_, specs[i], owner="bench")
            elif phase == "update":
                state.put(NS, TYPE, id_, updated[i], owner="bench")
            else:
                state.destroy(NS, TYPE, id_, owner="bench")
            writes += 1
            if writes % YIELD_EVERY == 0:
                await asyncio.sleep(0)
    t_write = time.perf_counter() - t0
    await asyncio.gather(*tasks)
    t_all = time.perf_counter() - t0
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1e3
    p99 = latencies[int(len(latencies) * 0.99)] * 1e3
    rate = writes / t_all
    print(f"{'metric':<34}{'value':>14}{'goal':>12}")
    print(f"{'writes':<34}{writes:>14,}")
    print(f"{'watchers x events read':<34}{len(latencies):>14,}")
    print(f"{'writer time (s)':<34}{t_write:>14.3f}")
    print(f"{'time until all delivered (s)':<34}{t_all:>14.3f}")
    print(f"{'writes/s (incl. delivery)':<34}{rate:>14,.0f}{'>= 20,000':>12}")
    print(f"{'event latency p50 (ms)':<34}{p50:>14.3f}")
    print(f"{'event latency p99 (ms)':<34}{p99:>14.3f}{'< 10':>12}")
    print(f"{'event latency mean (ms)':<34}{statistics.fmean(latencies) * 1e3:>14.3f}")
    print(f"writes_per_s={rate:.0f}")
    print(f"p99_ms={p99:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
