"""VIP election: the holder deadline (pure, fake clock), the session's keep-alive against a fake etcd,
and the election recipe against a real etcd (tests/harness/etcd.py)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator

import pytest
from harness.etcd import EtcdServer, etcd_fixture

from etcd_client import EtcdClient, EtcdError
from operators.vip.election import (
    Election,
    LeaseClock,
    Session,
    SessionLost,
    candidate_key,
    election_prefix,
)

etcd = pytest.fixture(scope="module")(etcd_fixture)


# ---- the holder deadline -------------------------------------------------------------------


def test_deadline_counts_from_the_send_time_of_the_last_answered_keepalive() -> None:
    c = LeaseClock(margin=5)
    c.answered(sent_at=100.0, ttl=60)  # the grant
    assert c.deadline == 155.0 and not c.expired(154.9) and c.expired(155.0)
    c.answered(sent_at=120.0, ttl=60)  # answered late (say at 125): still counts from 120
    assert c.deadline == 175.0
    c.answered(sent_at=110.0, ttl=60)  # an answer to an older request proves nothing new
    assert c.deadline == 175.0


def test_names_of_the_election() -> None:
    assert election_prefix(ipaddress.ip_address("10.0.0.100")) == b"talos:v1:vip:election:10.0.0.100"
    assert election_prefix(ipaddress.ip_address("fd00::100")) == b"talos:v1:vip:election:fd00::100"
    assert candidate_key(b"p", 0x694D8A1B2C3D4E5F) == b"p/694d8a1b2c3d4e5f"
    assert candidate_key(b"p", 0xAB) == b"p/ab"  # no padding


class FakeLeases:
    """Lease calls only; ``answer`` False: keep-alives time out (a partition)."""

    timeout = 5.0

    def __init__(self) -> None:
        self.answer = True
        self.sent: list[float] = []

    async def lease_grant(self, ttl: int) -> object:
        from etcd_client import Lease

        return Lease(7, ttl)

    async def lease_keepalive_once(self, lease_id: int, timeout: float | None = None) -> int:
        self.sent.append(asyncio.get_running_loop().time())
        if not self.answer:
            await asyncio.sleep(timeout or self.timeout)
            raise EtcdError("DEADLINE_EXCEEDED")
        return 3

    async def lease_revoke(self, lease_id: int) -> None:
        return None


async def test_session_is_lost_before_the_lease_could_expire() -> None:
    fake = FakeLeases()
    s = await Session(fake, ttl=3.0, margin=1.0, retry=0.2).start()  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    await asyncio.sleep(2.5)  # keep-alives every 1 s keep it
    assert not s.lost.is_set() and len(fake.sent) >= 2
    fake.answer = False
    last_answered = s.lease_clock.answered_sent_at
    await asyncio.wait_for(s.lost.wait(), 5)
    lost_at = loop.time()
    # gone at sent + TTL - margin (the server keeps the lease at least until sent + TTL)
    assert last_answered + 2.0 - 0.05 <= lost_at <= last_answered + 2.0 + 0.3
    with pytest.raises(SessionLost):
        await s.until_lost(asyncio.sleep(10))
    await s.close(1)


def test_margin_must_be_below_the_ttl() -> None:
    async def make() -> None:
        Session(FakeLeases(), ttl=5, margin=5)  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="margin"):
        asyncio.run(make())


# ---- the election against a real etcd ------------------------------------------------------


@pytest.fixture
async def client(etcd: EtcdServer) -> AsyncIterator[EtcdClient]:
    c = EtcdClient([etcd.url])
    await c.delete(b"talos:v1:vip:election:", prefix=True)
    yield c
    await c.close()


PREFIX = election_prefix(ipaddress.ip_address("10.0.0.100"))


async def test_oldest_candidate_leads_and_resign_passes_it_on(client: EtcdClient) -> None:
    sessions = [await Session(client, 10, 2).start() for _ in range(3)]
    elections = [Election(client, PREFIX, f"node{i}".encode()) for i in range(3)]
    await asyncio.wait_for(elections[0].campaign(sessions[0].lease_id), 5)
    waiting = []
    for e, s in zip(elections[1:], sessions[1:], strict=True):
        waiting.append(asyncio.create_task(e.campaign(s.lease_id)))
        await asyncio.sleep(0.3)  # keys are put in this order (create revisions)
    assert not any(t.done() for t in waiting)
    leader = await elections[0].leader()
    assert leader is not None and leader.value == b"node0"
    assert leader.key == candidate_key(PREFIX, sessions[0].lease_id)
    assert (await client.get_prefix(PREFIX + b"/")).count == 3
    holding = asyncio.create_task(elections[0].hold())
    await elections[0].resign()
    assert await asyncio.wait_for(holding, 5) == "our election key was deleted"
    await asyncio.wait_for(waiting[0], 5)  # the next oldest wins at once
    assert not waiting[1].done()
    # a lease that goes (crash: revoke stands in for expiry) passes it on too
    await client.lease_revoke(sessions[1].lease_id)
    await asyncio.wait_for(waiting[1], 5)
    for s in sessions:
        await s.close(2)


async def test_stale_key_of_an_earlier_run_is_deleted(client: EtcdClient) -> None:
    old = await Session(client, 30, 5).start()
    await Election(client, PREFIX, b"a").campaign(old.lease_id)  # "a" crashed holding it
    other = await Session(client, 30, 5).start()
    waiting = asyncio.create_task(Election(client, PREFIX, b"b").campaign(other.lease_id))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    assert not await Election(client, PREFIX, b"c").delete_stale()  # not c's key
    assert await Election(client, PREFIX, b"a").delete_stale()  # a restarted: its old key goes
    await asyncio.wait_for(waiting, 5)
    await old.close(2)
    await other.close(2)


async def test_session_is_lost_when_etcd_goes() -> None:
    with EtcdServer() as server:
        c = EtcdClient([server.url], timeout=1.0)
        s = await Session(c, ttl=4.0, margin=1.5, retry=0.2).start()
        server.kill()
        killed = asyncio.get_running_loop().time()
        await asyncio.wait_for(s.lost.wait(), 6)
        assert asyncio.get_running_loop().time() - killed <= 4.0 - 1.5 + 0.3
        await s.close(1)
        await c.close()
