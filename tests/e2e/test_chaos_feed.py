"""Chaos and stress on the Redis feed, through the whole loop (issue 8, item 3).

Every test runs the executor's loop (``tests/e2e/chaos_support.py``: real journal, paper
broker, snapshots, recovery; a one-agent bundle) on bars it reads from the local Redis
(127.0.0.1:6379, ``MIA_TEST_REDIS_URL``) through :class:`executor.feeds.redis_stream.
RedisStreamFeed`; without a Redis each is skipped with the reason.

- connection loss mid-run (CLIENT KILL between reads and while blocked; a link whose replies
  vanish, then dies and stays down a while): every bar journaled once, the decisions those of
  a run nobody disturbed;
- a crash with acks not yet flushed: the restart's redelivered bars are skipped, none is lost;
- a 1000x bar-rate burst, then a flood: latency quantiles, back-pressure (stream lag), and
  every entry accounted for (journaled, rejected with a fault, or dead-lettered).

Figures go to ``tests/benchmarks/results/chaos.json`` (cases ``feed_disconnect``,
``feed_restart``, ``burst``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from executor.feeds.base import Backoff, FeedItem, Idle
from executor.feeds.redis_stream import RedisStreamFeed
from executor.metrics import ExecutorMetrics
from executor.rows import ts_ns
from mia.data.stream import dead_letter_key, encode_bar, stream_key
from tests.e2e import chaos_support as cs

GROUP = "executor"
HANG_S = 120.0  # a stalled test fails with what it saw instead of hanging CI


@pytest.fixture(scope="module")
def redis_client() -> Iterator[Any]:
    client = cs.redis_or_skip()
    yield client
    client.close()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cs.tiny_bundle(tmp_path_factory.mktemp("chaos-feed") / "bundle", cs.params())


def _feed(url: str, prefix: str, name: str, **kw: Any) -> RedisStreamFeed:
    kw.setdefault("block_ms", 100)
    kw.setdefault("count", 25)
    return RedisStreamFeed(url, ["ES"], group=GROUP, consumer="c1", prefix=prefix,
                           start_id="0", backoff=Backoff(0.02, 0.2), client_name=name, **kw)


def _until(rig: cs.Rig, events: Iterator[Any], last_ts: int, seen: dict[str, int]) -> Iterator[Any]:
    """The feed's events until the loop has journaled the bar at ``last_ts``; counts kinds."""
    deadline = time.monotonic() + HANG_S
    for ev in events:
        kind = type(ev).__name__ if not isinstance(ev, Idle) else \
            ("idle" if ev.connected else "disconnected")
        seen[kind] = seen.get(kind, 0) + 1
        yield ev
        if rig.executor.state.last_bar_ns.get("ES") == last_ts:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"stalled: events {seen}, last journaled bar "
                                 f"{rig.executor.state.last_bar_ns.get('ES')}, want {last_ts}")


def _pending(client: Any, key: str) -> int:
    return int(client.xpending(key, GROUP)["pending"])


def _wait_blocked(client: Any, name: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(c["name"] == name and "b" in c["flags"] for c in client.client_list()):
            return
        time.sleep(0.005)
    raise AssertionError(f"the feed {name} never blocked in XREADGROUP")


@pytest.mark.slow
def test_a_feed_that_loses_its_connection_mid_run_loses_no_bar_and_processes_none_twice(
        redis_client, bundle, tmp_path):
    p = cs.params()
    n = 600
    bars = cs.market(cs.WARM_BARS + n, seed=11)
    traded = bars[cs.WARM_BARS:]
    ref = cs.build_rig(tmp_path / "reference", p, bundle, bars)
    want = ref.executor.run(cs.rest(ref, bars))
    ref.close()

    where = redis_client.connection_pool.connection_kwargs
    proxy = cs.TcpProxy((str(where.get("host", "127.0.0.1")), int(where.get("port", 6379))))
    rig = cs.build_rig(tmp_path / "chaos", p, bundle, bars)
    seen: dict[str, int] = {}
    kills: list[str] = []
    with cs.private_prefix(redis_client, "disconnect") as prefix:
        key = stream_key("ES", prefix)
        name = f"{prefix}:c1"
        cs.publish(redis_client, key, traded[:300])
        feed = _feed(f"redis://{proxy.address}/0", prefix, name)

        def cut_while_blocked() -> None:
            # the read blocks on a drained stream; its reply (150 new entries, now in the
            # consumer's pending list) is swallowed, the link then dies and stays down while
            # the producer goes on, then comes back
            _wait_blocked(redis_client, name)
            proxy.swallow()
            cs.publish(redis_client, key, traded[300:450])
            time.sleep(0.3)
            proxy.down()
            kills.append("reply lost, link down")
            cs.publish(redis_client, key, traded[450:])
            time.sleep(0.5)
            proxy.up()

        def events() -> Iterator[Any]:
            items = 0
            for ev in feed:
                yield ev
                if isinstance(ev, FeedItem):
                    items += 1
                    if items in (60, 120, 180):  # between reads, acks queued
                        assert cs.kill_clients(redis_client, name) == 1
                        kills.append(f"client kill after {items} bars")
                    if items == 300:
                        threading.Thread(target=cut_while_blocked, daemon=True).start()

        try:
            got = rig.executor.run(_until(rig, events(), ts_ns(traded[-1]), seen))
        finally:
            feed.close()
            proxy.close()
        pending = _pending(redis_client, key)
        dead = redis_client.xlen(dead_letter_key(key))
    rig.close()
    a = cs.audit(tmp_path / "chaos")

    assert a["integrity"] == "ok"
    assert a["bars"] == [f"ES:{ts_ns(b)}" for b in traded]  # every bar, once, in order
    assert got.bars == n
    assert feed.delivered == n  # none delivered twice, the swallowed ones not lost
    assert got.decisions == want.decisions  # as if nothing had happened
    assert (got.orders, got.fills) == (want.orders, want.fills)
    assert cs.inconsistencies(a) == []
    assert pending == 0
    assert dead == 0
    assert got.faults == 0
    # a killed idle connection is replaced by the client before its next command (nothing in
    # flight, nothing to re-read); the lost reply and the outage go through the feed's own
    # reconnect, which re-reads the pending entries
    assert proxy.accepted >= 1 + 3 + 1
    assert feed.reconnects >= 1
    assert seen.get("disconnected", 0) >= 2  # the connection lost, then refused while down
    cs.record_case("feed_disconnect", {
        "bars": n, "published": n, "journaled": len(a["bars"]), "delivered": feed.delivered,
        "lost": n - len(set(a["bars"])), "duplicated": len(a["bars"]) - len(set(a["bars"])),
        "faults": got.faults, "orders": got.orders, "fills": got.fills,
        "decisions_equal_undisturbed_run": got.decisions == want.decisions,
        "cuts": kills, "connections": proxy.accepted, "feed_reconnects": feed.reconnects,
        "idle_disconnected_events": seen.get("disconnected", 0), "pending_after": pending})


def test_a_crash_with_unflushed_acks_redelivers_bars_the_restart_skips(redis_client, bundle,
                                                                      tmp_path):
    p = cs.params()
    n, crash_after = 200, 120
    bars = cs.market(cs.WARM_BARS + n, seed=12)
    traded = bars[cs.WARM_BARS:]
    state = tmp_path / "state"
    with cs.private_prefix(redis_client, "restart") as prefix:
        key = stream_key("ES", prefix)
        cs.publish(redis_client, key, traded)
        first = cs.build_rig(state, p, bundle, bars)
        feed1 = _feed(cs.REDIS_URL, prefix, f"{prefix}:first")
        # the loop, bar by bar, then the process dies: no stop, and the acks queued for the
        # next round trip never leave (the suspended iterator is kept: closing it would flush)
        dead_process = iter(feed1)
        handled = 0
        while handled < crash_after:
            ev = next(dead_process)
            first.executor.handle(ev)
            handled += isinstance(ev, FeedItem)
        cs.kill_clients(redis_client, f"{prefix}:first")
        unacked = _pending(redis_client, key)
        first.close()

        second = cs.build_rig(state, p, bundle, bars)
        feed2 = _feed(cs.REDIS_URL, prefix, f"{prefix}:second")
        seen: dict[str, int] = {}
        try:
            got = second.executor.run(_until(second, iter(feed2), ts_ns(traded[-1]), seen))
        finally:
            feed2.close()
        pending = _pending(redis_client, key)
    second.close()
    a = cs.audit(state)

    del dead_process
    assert unacked >= 1  # the crash left journaled bars unacknowledged
    redelivered = feed1.delivered + feed2.delivered - n
    assert redelivered >= 1
    assert a["bars"] == [f"ES:{ts_ns(b)}" for b in traded]
    assert got.bars == n - crash_after  # the redelivered ones were skipped, not traded again
    assert got.faults == 0
    assert pending == 0
    assert cs.inconsistencies(a) == []
    assert second.recovered.mismatches == ()
    refusals = [r for r in a["alerts"] if r["code"] == "risk_input"]
    assert refusals == []  # the restored risk engine trades the book it holds
    cs.record_case("feed_restart", {
        "bars": n, "crash_after_bars": crash_after, "unacked_at_crash": unacked,
        "redelivered": redelivered, "journaled": len(a["bars"]),
        "lost": n - len(set(a["bars"])), "duplicated": len(a["bars"]) - len(set(a["bars"])),
        "orders": len(a["orders"]), "fills": len(a["fills"]), "pending_after": pending})


def _lag_sampler(client: Any, key: str, stop: threading.Event,
                 out: list[tuple[int, int]]) -> None:
    # XINFO GROUPS: entries not yet delivered to the group (lag) and delivered but unacked
    while not stop.is_set():
        groups = [g for g in client.xinfo_groups(key) if g["name"] == GROUP.encode()] \
            if client.exists(key) else []  # the feed creates the stream and its group
        for g in groups:
            out.append((int(g.get("lag") or 0), int(g["pending"])))
        stop.wait(0.005)


@pytest.mark.slow
def test_a_1000x_burst_then_a_flood_is_measured_and_nothing_is_dropped_silently(
        redis_client, bundle, tmp_path):
    p = cs.params()
    paced, flood = 100, 3000
    bars = cs.market(cs.WARM_BARS + paced + flood, seed=13)
    traded = bars[cs.WARM_BARS:]
    period = 60.0 / 1000  # one-minute bars at 1000x real time: one every 60 ms
    # at 1000x the wall clock's 60 s between snapshots is 1000 bars of the bars' clock
    rig = cs.build_rig(tmp_path / "state", p, bundle, bars, metrics=ExecutorMetrics(),
                       snapshot_ns=1000 * 60_000_000_000)
    with cs.private_prefix(redis_client, "burst") as prefix:
        key = stream_key("ES", prefix)
        feed = _feed(cs.REDIS_URL, prefix, f"{prefix}:c1", count=100)
        published: dict[str, Any] = {"good": 0, "malformed": 0, "duplicates": 0}
        phases: dict[str, float] = {}

        def produce() -> None:
            _wait_blocked(redis_client, f"{prefix}:c1")
            t0 = time.monotonic()
            for i, b in enumerate(traded[:paced]):
                time.sleep(max(0.0, t0 + i * period - time.monotonic()))
                redis_client.xadd(key, encode_bar(ts_ns(b), b))
                published["good"] += 1
            phases["paced_s"] = time.monotonic() - t0
            t1 = time.monotonic()
            rest = traded[paced:]
            for start in range(0, len(rest), 200):
                pipe = redis_client.pipeline(transaction=False)
                for j, b in enumerate(rest[start:start + 200], start):
                    fields = encode_bar(ts_ns(b), b)
                    pipe.xadd(key, fields)
                    published["good"] += 1
                    if j % 97 == 0:  # a malformed entry: dead-lettered and counted
                        pipe.xadd(key, {k: v for k, v in fields.items() if k != "volume"})
                        published["malformed"] += 1
                    if j % 89 == 0:  # the same minute again as a new entry: rejected
                        pipe.xadd(key, fields)
                        published["duplicates"] += 1
                pipe.execute()
            phases["flood_s"] = time.monotonic() - t1

        stop = threading.Event()
        lag: list[tuple[int, int]] = []
        producer = threading.Thread(target=produce, daemon=True)
        sampler = threading.Thread(target=_lag_sampler, args=(redis_client, key, stop, lag),
                                   daemon=True)
        seen: dict[str, int] = {}
        want_bad = (flood + 96) // 97

        def events() -> Iterator[Any]:
            yield from _until(rig, iter(feed), ts_ns(traded[-1]), seen)
            # the last bar is journaled; the malformed entries before it are all handled
            # (they sort before the good ones of their batch), nothing after it was published
            assert seen.get("BadMessage", 0) == want_bad

        producer.start()
        sampler.start()
        t_run = time.monotonic()
        try:
            got = rig.executor.run(events())
        finally:
            stop.set()
            feed.close()
        run_s = time.monotonic() - t_run
        producer.join(timeout=30)
        pending = _pending(redis_client, key)
        dead = redis_client.xlen(dead_letter_key(key))
        records = list(rig.journal.read("bar"))
    rig.close()
    a = cs.audit(tmp_path / "state")

    # nothing dropped silently: every entry is a journaled bar, a rejected bar or a dead letter
    rejected = a["faults"]["data_non_monotonic"]
    assert published["good"] == paced + flood
    assert len(a["bars"]) == paced + flood == got.bars
    assert rejected == published["duplicates"]
    assert dead == published["malformed"] == seen["BadMessage"] == \
        a["faults"]["data_missing_field"]
    assert sum(a["faults"].values()) == rejected + dead
    assert got.faults == rejected + dead
    assert pending == 0
    assert cs.inconsistencies(a) == []

    # end to end: Redis stamped the entry (its id), the journal stamped the bar's record
    e2e = np.array([r.ts_ns - cs.entry_ns(r.payload["source_id"]) for r in records])
    journaled = np.array([r.ts_ns for r in records])
    added = np.sort(np.array([cs.entry_ns(r.payload["source_id"]) for r in records]))
    # back-pressure: bars already in the stream, not yet journaled, as each bar is journaled
    backlog = np.searchsorted(added, journaled, side="right") - np.arange(1, len(records) + 1)
    tick = np.asarray(got.latency_ns)
    figures: dict[str, Any] = {"bars": paced + flood, "published_entries": sum(published.values()),
                               "journaled": len(a["bars"]), "rejected_duplicates": rejected,
                               "dead_lettered": dead, "lost": 0, "duplicated": 0,
                               "faults": got.faults, "orders": got.orders, "fills": got.fills}
    for phase, sl in (("paced_1000x", slice(0, paced)), ("flood", slice(paced, None))):
        figures[phase] = {
            "bars": len(tick[sl]),
            "tick_to_decision": cs.quantiles_us(tick[sl]),
            "publish_to_journal": cs.quantiles_us(e2e[sl]),
            "max_backlog_bars": int(backlog[sl].max()),
        }
    flood_rate = flood / phases["flood_s"] if phases.get("flood_s") else float("nan")
    figures["paced_1000x"]["publish_seconds"] = round(phases["paced_s"], 3)
    figures["flood"]["publish_bars_per_s"] = round(flood_rate, 1)
    figures["flood"]["times_real_time"] = round(flood_rate * 60.0, 0)
    figures["consumer_bars_per_s"] = round((paced + flood) / run_s, 1)
    figures["stream_lag_max"] = max((x for x, _ in lag), default=0)
    figures["stream_pending_max"] = max((y for _, y in lag), default=0)
    figures["lag_samples"] = len(lag)
    cs.record_case("burst", figures)
