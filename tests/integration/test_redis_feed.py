"""RedisStreamFeed against the real local Redis (127.0.0.1:6379); skipped visibly without it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from executor.feeds import BadMessage, FeedItem, Idle
from executor.feeds.redis_stream import RedisStreamFeed
from mia.clock import TestClock
from mia.data.store import BarStore
from mia.data.stream import bar_time, dead_letter_key, encode_bar, publish_bars, stream_key
from mia.errors import OperationalError
from mia.types import Bar
from tests.unit.conftest import make_bars

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
URL = os.environ.get("MIA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
T0_NS = 1_704_207_660_000_000_000
MINUTE = 60 * 10**9


@pytest.fixture
def admin():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"no Redis at {URL} ({exc}); start redis-server or set MIA_TEST_REDIS_URL")
    yield client
    client.close()


@pytest.fixture
def prefix(admin):
    """A private key prefix per test; every key under it is deleted afterwards."""
    name = f"mia-test:{uuid.uuid4().hex[:12]}:bars"
    yield name
    keys = list(admin.scan_iter(match=f"{name}*"))
    if keys:
        admin.delete(*keys)


def bar(i: int, symbol: str = "ES") -> tuple[int, Bar]:
    ts = T0_NS + i * MINUTE
    close = 4800.0 + i * 0.25
    return ts, Bar(bar_time(ts), symbol, close, close + 0.5, close - 0.5, close, 10.0 + i)


def publish(admin, prefix: str, indices, symbol: str = "ES") -> None:
    for i in indices:
        ts, b = bar(i, symbol)
        admin.xadd(stream_key(symbol, prefix), encode_bar(ts, b))


def feed(prefix: str, consumer: str = "c1", **kwargs) -> RedisStreamFeed:
    kwargs.setdefault("start_id", "0")
    kwargs.setdefault("block_ms", 200)
    return RedisStreamFeed(URL, kwargs.pop("symbols", ["ES"]), group="executor",
                           consumer=consumer, prefix=prefix,
                           client_name=f"{prefix}:{consumer}", **kwargs)


def take(events, n: int, *, ack: bool = True, max_idle: int = 50) -> list[FeedItem]:
    """The next ``n`` bars of an event iterator, acking each like the loop does."""
    out: list[FeedItem] = []
    idle = 0
    for event in events:
        if isinstance(event, FeedItem):
            if ack:
                event.ack()
            out.append(event)
            if len(out) == n:
                break
        elif isinstance(event, Idle):
            idle += 1
            if idle > max_idle:
                raise AssertionError(f"only {len(out)} of {n} bars arrived")
    return out


def kill_clients(admin, name: str) -> int:
    killed = 0
    for client in admin.client_list():
        if client["name"] == name:
            admin.client_kill_filter(_id=client["id"])
            killed += 1
    return killed


def pending(admin, prefix: str, symbol: str = "ES") -> int:
    return int(admin.xpending(stream_key(symbol, prefix), "executor")["pending"])


def test_bars_published_from_the_store_arrive_in_ts_order_and_acks_clear_the_pending_list(
        admin, prefix, tmp_path):
    frame = pd.concat([make_bars(end=date(2024, 1, 2), symbol="ES", seed=1),
                       make_bars(end=date(2024, 1, 2), symbol="MNQ", seed=2)])
    BarStore(tmp_path).write(frame)
    assert publish_bars(admin, tmp_path, ["ES", "MNQ"], prefix=prefix) == len(frame)
    f = feed(prefix, symbols=["ES", "MNQ"], count=500)
    items = take(iter(f), len(frame))
    f.close()
    for sym in ("ES", "MNQ"):
        got = [i for i in items if i.bar.symbol == sym]
        want = frame[frame["symbol"] == sym]
        assert [i.ts_ns for i in got] == pd.DatetimeIndex(want["ts"]).asi8.tolist()
        assert [i.bar.close for i in got] == want["close"].tolist()
        assert pending(admin, prefix, sym) == 0
    assert all(i.source_id.startswith(f"{i.bar.symbol}/") for i in items)


def test_a_restart_delivers_the_unacked_bars_first_then_new_ones(admin, prefix):
    publish(admin, prefix, range(20))
    first = feed(prefix)
    events = iter(first)
    done = take(events, 5)  # processed and acked
    take(events, 3, ack=False)  # delivered, then the process stops before journaling them
    first.close()
    assert pending(admin, prefix) >= 3
    publish(admin, prefix, range(20, 30))
    second = feed(prefix)
    rest = take(iter(second), 25)
    second.close()
    assert [i.ts_ns for i in done + rest] == [bar(i)[0] for i in range(30)]
    assert pending(admin, prefix) == 0


CRASHER = """
import os, signal, sys
from executor.feeds import FeedItem
from executor.feeds.redis_stream import RedisStreamFeed
url, prefix, journal, stop_after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
feed = RedisStreamFeed(url, ["ES"], group="executor", consumer="c1", prefix=prefix,
                       start_id="0", block_ms=200, count=7)
with open(journal, "a") as out:
    n = 0
    for event in feed:
        if isinstance(event, FeedItem):
            out.write(f"{event.ts_ns}\\n"); out.flush(); os.fsync(out.fileno())  # journaled
            event.ack()
            n += 1
            if n == stop_after:
                os.kill(os.getpid(), signal.SIGKILL)
"""


def test_kill_9_of_the_consumer_loses_no_bar_and_the_journal_dedups_redeliveries(
        admin, prefix, tmp_path):
    publish(admin, prefix, range(40))
    journal = tmp_path / "journal.txt"
    proc = subprocess.run([sys.executable, "-c", CRASHER, URL, prefix, str(journal), "17"],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60,
                          check=False)
    assert proc.returncode == -9
    processed = [int(x) for x in journal.read_text().split()]
    assert len(processed) == 17
    redelivered = 0
    f = feed(prefix)
    events = iter(f)
    while len(processed) < 40:
        item = take(events, 1)[0]
        if item.ts_ns in processed:  # the journal's (symbol, ts_ns) dedup
            redelivered += 1
            continue
        processed.append(item.ts_ns)
    f.close()
    assert processed == [bar(i)[0] for i in range(40)]
    # acks are flushed with the next read, so the kill left the last acked bars pending
    assert redelivered >= 1
    assert pending(admin, prefix) == 0


def test_malformed_entries_are_dead_lettered_acked_and_do_not_block_the_stream(admin, prefix):
    key = stream_key("ES", prefix)
    publish(admin, prefix, [0])
    ts, good = bar(1)
    fields = encode_bar(ts, good)
    admin.xadd(key, {**fields, "close": "nan"})
    admin.xadd(key, {k: v for k, v in fields.items() if k != "volume"})
    admin.xadd(key, {**fields, "symbol": "MNQ"})
    admin.xadd(key, {**fields, "close": "4800.x"})
    publish(admin, prefix, [2])
    f = feed(prefix)
    events = []
    for event in f:
        if isinstance(event, Idle):
            break
        events.append(event)
        if isinstance(event, FeedItem):
            event.ack()
    f.close()
    bad = [e for e in events if isinstance(e, BadMessage)]
    assert sorted(b.code for b in bad) == ["missing_field", "non_finite", "not_a_number",
                                           "wrong_symbol"]
    assert [e.ts_ns for e in events if isinstance(e, FeedItem)] == [bar(0)[0], bar(2)[0]]
    dead = admin.xrange(dead_letter_key(key))
    assert len(dead) == 4
    assert {d[1][b"_code"].decode() for d in dead} == {b.code for b in bad}
    assert all(d[1][b"_stream"].decode() == key and d[1][b"_reason"] for d in dead)
    assert pending(admin, prefix) == 0


def test_a_pending_entry_trimmed_away_is_reported_not_lost_silently(admin, prefix):
    publish(admin, prefix, range(3))
    first = feed(prefix)
    take(iter(first), 3, ack=False)
    first.close()
    admin.xtrim(stream_key("ES", prefix), maxlen=0)
    second = feed(prefix)
    events = iter(second)
    got = [next(events) for _ in range(3)]
    second.close()
    assert [e.code for e in got if isinstance(e, BadMessage)] == ["trimmed"] * 3
    assert pending(admin, prefix) == 0


def client_ids(admin, name: str) -> set[int]:
    return {int(c["id"]) for c in admin.client_list() if c["name"] == name}


def test_connection_killed_between_reads_resumes_without_loss(admin, prefix):
    publish(admin, prefix, range(10))
    f = feed(prefix, count=3)
    events = iter(f)
    got = take(events, 4)  # mid-stream: 4 of 10 read, 3 per round trip
    before = client_ids(admin, f"{prefix}:c1")
    assert kill_clients(admin, f"{prefix}:c1") == 1
    publish(admin, prefix, range(10, 20))
    got += take(events, 16)
    after = client_ids(admin, f"{prefix}:c1")
    f.close()
    # no reply was in flight, so the pool's reconnect before the next command loses nothing
    assert after
    assert not after & before
    assert [i.ts_ns for i in got] == [bar(i)[0] for i in range(20)]
    assert pending(admin, prefix) == 0


def test_connection_killed_while_blocked_waiting_resumes_without_loss(admin, prefix):
    publish(admin, prefix, range(3))
    f = feed(prefix, block_ms=2000)
    events = iter(f)
    got = take(events, 3)
    killed = threading.Event()

    def kill_then_publish() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(  # wait until it blocks in XREADGROUP
                c["name"] == f"{prefix}:c1" and "b" in c["flags"] for c in admin.client_list()):
            time.sleep(0.01)
        kill_clients(admin, f"{prefix}:c1")
        killed.set()
        publish(admin, prefix, range(3, 8))

    threading.Thread(target=kill_then_publish, daemon=True).start()
    states = []
    for event in events:
        if isinstance(event, Idle):
            states.append(event.connected)
        elif isinstance(event, FeedItem):
            event.ack()
            got.append(event)
            if len(got) == 8:
                break
    f.close()
    assert killed.is_set()
    assert False in states
    assert [i.ts_ns for i in got] == [bar(i)[0] for i in range(8)]
    assert pending(admin, prefix) == 0


def test_a_new_group_created_at_dollar_skips_the_backlog_and_reads_new_entries(admin, prefix):
    publish(admin, prefix, range(5))  # a backlog of stale bars
    f = feed(prefix, start_id="$")
    events = iter(f)
    assert next(events) == Idle(0.2, True, "no data")
    groups = admin.xinfo_groups(stream_key("ES", prefix))
    assert [g["name"] for g in groups] == [b"executor"]
    publish(admin, prefix, [5, 6])
    assert [i.ts_ns for i in take(events, 2)] == [bar(5)[0], bar(6)[0]]
    f.close()


def test_redis_down_yields_disconnected_idles_with_backoff_instead_of_raising(admin):
    clock = TestClock(datetime(2024, 1, 2, tzinfo=UTC))
    f = RedisStreamFeed("redis://127.0.0.1:1/0", ["ES"], group="g", consumer="c", clock=clock)
    events = iter(f)
    idles = [next(events) for _ in range(4)]
    f.close()
    assert all(isinstance(e, Idle) and not e.connected for e in idles)
    assert [e.waited_s for e in idles] == [0.1, 0.2, 0.4, 0.8]
    assert "connect failed" in idles[0].reason
    assert clock.monotonic() == pytest.approx(1.5)


def test_bad_feed_settings_are_refused_before_connecting():
    with pytest.raises(OperationalError, match="start_id"):
        RedisStreamFeed(URL, ["ES"], group="g", consumer="c", start_id="latest")
    with pytest.raises(OperationalError, match="block_ms"):
        RedisStreamFeed(URL, ["ES"], group="g", consumer="c", block_ms=0)
    with pytest.raises(OperationalError, match="url"):
        RedisStreamFeed("http://127.0.0.1:6379", ["ES"], group="g", consumer="c")


def test_close_mid_batch_ends_iteration_and_leaves_the_unread_rest_pending(admin, prefix):
    publish(admin, prefix, range(10))
    f = feed(prefix, count=10)
    events = iter(f)
    got = take(events, 4)
    f.close()
    assert list(events) == []
    assert pending(admin, prefix) == 6  # the 4 acks were flushed by close()
    again = feed(prefix)
    rest = take(iter(again), 6)
    again.close()
    assert [i.ts_ns for i in got + rest] == [bar(i)[0] for i in range(10)]
