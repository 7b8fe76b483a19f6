"""A flash crash, a gap crash, and fuzzed bars and stream messages through the loop (issue 8,
item 3).

- **flash crash**: a -10 % fall in a dozen bars (each bar 6 ATRs: above the volatility
  breaker's 4, below the inline validator's jump limit of 8) and the recovery: the volatility
  breaker trips (journaled risk events, REDUCING) and no order enters or flips while it holds;
  the same bars with the breaker out of reach do enter (the policy wants to);
- **gap crash**: one bar 10 % lower, then the market stays there: the first is rejected as a
  jump, the next confirms it (mia.validation.inline), and the breakers trip on it;
- **10k fuzzed bars** (hypothesis: NaN, inf, zero and negative prices, high < low, negative,
  zero and huge volume, out-of-order and duplicate ts, huge jumps) through the loop: no
  exception, every bad bar rejected with a fault, every good one accepted, and every order at
  an accepted bar;
- **10k fuzzed stream messages** (bad fields, wrong types, missing keys, garbage bytes, bad
  timestamps, partial groups): the wire parser returns a bar or a ``MalformedMessage``, nothing
  else; then all of them, between good bars, go through Redis, the feed and the loop: every
  malformed one dead-lettered and counted, no order after a message that is not a good bar.

Figures: ``tests/benchmarks/results/chaos.json`` (cases ``flash_crash``, ``gap_crash``,
``fuzz_bars``, ``fuzz_messages``).
"""

from __future__ import annotations

import functools
import math
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.feeds.base import FeedItem
from executor.feeds.redis_stream import RedisStreamFeed
from executor.rows import input_row, ts_ns
from mia.data.stream import (
    REJECT_CODES,
    MalformedMessage,
    dead_letter_key,
    decode_message,
    encode_bar,
    stream_key,
)
from mia.features.online import OnlineFeatures
from mia.features.spec import make_spec
from mia.types import Bar
from tests.e2e import chaos_support as cs

MINUTE = 60_000_000_000
ENTRIES = ("enter", "flip")  # the gate's actions that open exposure (Order.reason)
FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cs.tiny_bundle(tmp_path_factory.mktemp("chaos-market") / "bundle", cs.params())


# --- crashes -------------------------------------------------------------------------------------

def crash_market(before: int, after: int, seed: int, *, drop: float = 0.10,
                 atrs: float = 6.0) -> tuple[list[Bar], int, int]:
    """Bars that fall by ``drop`` from the last of ``before`` calm ones, ``atrs`` ATR(14) a bar
    (the kernel the loop runs), climb back the same way, then ``after`` calm bars.

    :return: the bars, and the ts of the first and the last bar of the fall and recovery.
    """
    bars = cs.market(cs.WARM_BARS + before, seed)
    atr_state = OnlineFeatures(make_spec(["atr_14"]))
    atr = 0.0
    for b in bars:
        atr = float(atr_state.update(input_row(b, None))[0])
    ts = cs.session_minutes(len(bars) + after + 200)
    rng = np.random.default_rng(seed)
    price = top = bars[-1].close

    def add(close: float) -> None:
        nonlocal price, atr
        o = price
        b = cs.bar_at(ts[len(bars)], o, max(o, close) + 0.25, min(o, close) - 0.25, close,
                      float(rng.integers(2000, 9000)))
        bars.append(b)
        atr = float(atr_state.update(input_row(b, None))[0])
        price = close

    first = ts[len(bars)]
    floor = top * (1.0 - drop)
    while price - floor >= 0.25:
        add(round((price - min(price - floor, atrs * atr)) * 4) / 4)
    while top - price >= 0.25:
        add(round((price + min(top - price, atrs * atr)) * 4) / 4)
    last = ts[len(bars) - 1]
    for _ in range(after):
        add(round((price + float(rng.normal(0.0, 1.0))) * 4) / 4)
    return bars, first, last


def _orders_while(a: dict[str, Any], cause: str) -> tuple[list[dict[str, Any]], list[tuple]]:
    # the orders sent while ``cause`` held (from its engage bar to its release bar)
    windows, start = [], None
    for r in a["risk_events"]:
        ev = r["event"]
        if ev["cause"] != cause:
            continue
        if ev["action"] == "engage" and start is None:
            start = int(ev["at_ns"])
        elif ev["action"] == "release" and start is not None:
            windows.append((start, int(ev["at_ns"])))
            start = None
    if start is not None:
        windows.append((start, math.inf))
    inside = [o for o in a["orders"] if any(s <= o["created_ns"] < e for s, e in windows)]
    return inside, windows


def test_a_flash_crash_trips_the_volatility_breaker_and_nothing_enters_while_it_holds(
        bundle, tmp_path):
    bars, first, last = crash_market(200, 150, seed=31)
    runs = {}
    for label, p in (("breaker", cs.params()),
                     # the same bars with the breaker (and so the jump rule) out of reach
                     ("control", cs.params(volatility_breaker_atr=1000.0))):
        rig = cs.build_rig(tmp_path / label, p, bundle, bars)
        stats = rig.executor.run(cs.rest(rig, bars))
        rig.close()
        runs[label] = (stats, cs.audit(tmp_path / label))
    stats, a = runs["breaker"]
    inside, windows = _orders_while(a, "breaker.volatility")
    assert windows, "the volatility breaker never tripped"
    assert first <= windows[0][0] <= last  # it tripped in the crash
    assert "REDUCING" in a["states"]
    assert stats.faults == 0  # a fall of 6 ATRs a bar is a market move, not bad data
    assert [o for o in inside if o["reason"] in ENTRIES] == []
    _, control = runs["control"]
    wanted = [o for o in control["orders"] if any(s <= o["created_ns"] < e for s, e in windows)
              and o["reason"] in ENTRIES]
    assert wanted, "without the breaker the policy enters in that window: the test would be moot"
    assert cs.inconsistencies(a) == []
    trips = Counter(r["event"]["cause"] for r in a["risk_events"]
                    if r["event"]["action"] == "engage")
    cs.record_case("flash_crash", {
        "bars": stats.bars, "crash_bars": sum(first <= ts_ns(b) <= last for b in bars),
        "drop": 0.10, "low": min(b.low for b in bars), "faults": stats.faults,
        "orders": stats.orders, "orders_while_tripped": len(inside),
        "entries_while_tripped": 0, "entries_in_that_window_without_breaker": len(wanted),
        "trips": dict(trips), "tripped_minutes": [round((e - s) / MINUTE, 1)
                                                   for s, e in windows]})


def test_a_gap_crash_is_a_jump_the_next_bar_confirms_and_the_breakers_trip(bundle, tmp_path):
    p = cs.params()
    bars = cs.market(cs.WARM_BARS + 200, seed=32)
    ts = cs.session_minutes(len(bars) + 100)
    price = round(bars[-1].close * 0.90 * 4) / 4
    rng = np.random.default_rng(32)
    gap_ts = ts[len(bars)]
    for _ in range(100):
        c = round((price + float(rng.normal(0.0, 1.0))) * 4) / 4
        bars.append(cs.bar_at(ts[len(bars)], price, max(price, c) + 0.25,
                              min(price, c) - 0.25, c, 3000.0))
        price = c
    rig = cs.build_rig(tmp_path / "state", p, bundle, bars)
    stats = rig.executor.run(cs.rest(rig, bars))
    rig.close()
    a = cs.audit(tmp_path / "state")
    assert a["faults"] == {"data_jump": 1}  # the gap bar; the one after it confirms the move
    trips = Counter(r["event"]["cause"] for r in a["risk_events"]
                    if r["event"]["action"] == "engage")
    assert trips["breaker.volatility"] >= 1
    inside, windows = _orders_while(a, "breaker.volatility")
    assert windows[0][0] == gap_ts + MINUTE  # on the confirming bar
    assert [o for o in inside if o["reason"] in ENTRIES] == []
    assert cs.inconsistencies(a) == []
    cs.record_case("gap_crash", {"bars": stats.bars + stats.faults, "gap": -0.10,
                                 "faults": dict(a["faults"]), "trips": dict(trips),
                                 "orders": stats.orders, "orders_while_tripped": len(inside),
                                 "entries_while_tripped": 0})


# --- fuzzed bars ---------------------------------------------------------------------------------

GOOD = ("valid", "zero_volume", "huge_volume")
BAD = ("nan", "inf", "negative_price", "zero_price", "high_below_low", "negative_volume",
       "out_of_order", "duplicate_ts", "huge_jump")
EXPECTED = {"nan": "non_finite", "inf": "non_finite", "negative_price": "bad_price",
            "zero_price": "bad_price", "high_below_low": "bad_ohlc",
            "negative_volume": "negative_volume", "out_of_order": "non_monotonic",
            "duplicate_ts": "non_monotonic", "huge_jump": "jump"}
FUZZ_BARS, BATCH = 10_000, 250
# half the draws are good bars, so the loop trades between the bad ones
_kind = st.sampled_from(("valid",) * 7 + GOOD[1:] + BAD)
_spec = st.tuples(_kind, st.integers(0, 4), st.floats(-2.0, 2.0), st.integers(1, 30),
                  st.booleans())


def fuzz_bars(specs: list[tuple[str, int, float, int, bool]], start_ns: int,
              close: float) -> list[tuple[str, FeedItem]]:
    """Turn drawn specs into (kind, feed item) with a model of what the validator accepted.

    Good bars continue from the last accepted close; each bar has a message id of its own (a
    Redis entry's), so a duplicate minute is a new message, not a redelivery. The first bar is
    good (the validator has no reference yet) and a huge jump is followed by a good bar (two
    jumps to one level would confirm each other: a real move, tested by the gap crash).
    """
    out: list[tuple[str, FeedItem]] = []
    last_ts, t = start_ns, start_ns
    kinds = [k for k, *_ in specs]
    kinds[0] = "valid"
    for i in range(1, len(kinds)):
        if kinds[i - 1] == "huge_jump":
            kinds[i] = "valid"
    for i, ((_, field, x, m, up), kind) in enumerate(zip(specs, kinds, strict=True)):
        t += MINUTE
        c = max(1.0, round((close + x) * 4) / 4)
        o, h, lo, v = close, max(close, c) + 0.25, min(close, c) - 0.25, 100.0 + i
        ts = t
        values = [o, h, lo, c, v]
        if kind == "zero_volume":
            values[4] = 0.0
        elif kind == "huge_volume":
            values[4] = 1e15
        elif kind in ("nan", "inf"):
            values[field] = math.nan if kind == "nan" else (math.inf if up else -math.inf)
        elif kind == "negative_price":
            values[field % 4] = -abs(values[field % 4])
        elif kind == "zero_price":
            values[field % 4] = 0.0
        elif kind == "high_below_low":
            values[1] = values[2] - 0.25 * m
        elif kind == "negative_volume":
            values[4] = -float(m)
        elif kind == "out_of_order":
            ts = last_ts - m * MINUTE
        elif kind == "duplicate_ts":
            ts = last_ts
        elif kind == "huge_jump":  # 30 % and more: hundreds of ATRs
            j = close * (1.3 + m / 30) if up else close / (1.3 + m / 30)
            values = [j, j + 0.25, j - 0.25, j, v]
        if kind in GOOD:
            last_ts, close = ts, values[3]
        out.append((kind, FeedItem(cs.bar_at(ts, *values), None, f"fuzz/{i}", ts)))
    return out


@pytest.mark.slow
def test_10k_fuzzed_bars_never_crash_the_loop_and_no_order_follows_a_bad_bar(bundle, tmp_path):
    # three faults in a row would latch HALTED and stop the trading this test watches
    p = cs.params(data_fault_limit=1_000_000)
    calm = cs.market(cs.WARM_BARS + 1, seed=41)
    tally: Counter[str] = Counter()
    examples = [0]

    @settings(FUZZ, max_examples=FUZZ_BARS // BATCH)
    @given(st.lists(_spec, min_size=BATCH, max_size=BATCH))
    def run(specs: list[tuple[str, int, float, int, bool]]) -> None:
        examples[0] += 1
        rig = cs.build_rig(tmp_path / f"fuzz-{examples[0]}", p, bundle, calm)
        try:
            ex = rig.executor
            accepted: set[int] = set()
            for kind, item in fuzz_bars(specs, ts_ns(calm[-1]), calm[-1].close):
                bars, faults = ex.stats.bars, ex.stats.faults
                ex.handle(item)  # never raises
                took = ex.stats.bars == bars + 1
                assert took == (kind in GOOD), (kind, item.bar)
                assert ex.stats.faults == faults + (kind not in GOOD), (kind, item.bar)
                if took:
                    accepted.add(item.ts_ns)
                tally[kind] += 1
            orders = [r.payload for r in rig.journal.read("order")
                      if r.payload["action"] == "submit"]
            assert all(o["created_ns"] in accepted for o in orders)  # after a good bar only
            codes = Counter(str(r.payload["code"]).removeprefix("data_")
                            for r in rig.journal.read("alert")
                            if str(r.payload["code"]).startswith("data_"))
            assert codes == Counter(EXPECTED[k] for k, _ in fuzz_bars(
                specs, ts_ns(calm[-1]), calm[-1].close) if k in EXPECTED)
            tally["orders"] += len(orders)
        finally:
            rig.close()

    run()
    total = sum(v for k, v in tally.items() if k != "orders")
    assert total >= FUZZ_BARS
    assert tally["orders"] > 0  # the loop traded between the bad bars
    cs.record_case("fuzz_bars", {
        "bars": total, "examples": examples[0], "crashes": 0,
        "bad": sum(tally[k] for k in BAD), "good": sum(tally[k] for k in GOOD),
        "faults": sum(tally[k] for k in BAD), "orders": tally["orders"],
        "orders_on_bad_bars": 0, "by_kind": {k: tally[k] for k in GOOD + BAD}})


# --- fuzzed stream messages ----------------------------------------------------------------------

FUZZ_MESSAGES = 10_000
_TRICKY = (b"nan", b"NaN", b"inf", b"-inf", b"1e400", b"-1e400", b"1e-400", b"", b" ", b"0x10",
           b"1_000", b"--1", b"+4800", b" 4800.5 ", b"4800,5", b"\xff\xfe", b"\x00",
           "\u0661\u0662\u0663".encode(), b"True", b"[1]", b"{}", b"None", b"9" * 5000,
           b"-0", b"0")
_FIELDS = (b"ts_ns", b"symbol", b"open", b"high", b"low", b"close", b"volume")
_mutation = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(_FIELDS)),
    st.tuples(st.just("value"), st.sampled_from(_FIELDS), st.sampled_from(_TRICKY)),
    st.tuples(st.just("bytes"), st.sampled_from(_FIELDS), st.binary(max_size=12)),
    st.tuples(st.just("unknown"), st.binary(min_size=1, max_size=8), st.binary(max_size=8)),
    st.tuples(st.just("symbol"), st.sampled_from((b"MNQ", b"es", b"", b"ES ", b"\xffES"))),
    st.tuples(st.just("ts"), st.sampled_from(("plus1", "zero", "neg", "float", "huge",
                                              "sci", "spaces"))),
    st.tuples(st.just("group"), st.sampled_from((b"bid_volume", b"iv_call", b"vix"))),
)


def _mutate(fields: dict[bytes, bytes], mutations: list[tuple[Any, ...]]) -> dict[bytes, bytes]:
    out = dict(fields)
    for m in mutations:
        if m[0] == "drop":
            out.pop(m[1], None)
        elif m[0] in ("value", "bytes"):
            out[m[1]] = m[2]
        elif m[0] == "unknown":
            out[m[1]] = m[2]
        elif m[0] == "symbol":
            out[b"symbol"] = m[1]
        elif m[0] == "group":
            out[m[1]] = b"1.0"
        elif m[0] == "ts":
            t = int(fields[b"ts_ns"])
            out[b"ts_ns"] = {"plus1": str(t + 1), "zero": "0", "neg": str(-t),
                             "float": f"{t / 1e9:.3f}", "huge": str(2**64),
                             "sci": f"{t:e}", "spaces": f" {t} "}[m[1]].encode()
    return out or {b"garbage": b"\x00"}  # an entry needs a field


PER_GOOD = 4  # fuzzed entries between two good bars on the stream
PER_EXAMPLE = 5  # fuzzed entries drawn per hypothesis example


def slot(i: int) -> int:
    """:return: the stream minute of fuzzed entry ``i`` (minute ``5 g`` holds good bar ``g``)."""
    return (i // PER_GOOD) * (PER_GOOD + 1) + 1 + i % PER_GOOD


@functools.cache
def stream_bars() -> tuple[Bar, ...]:
    """The warm-up, then one bar per stream minute (:func:`slot`)."""
    return tuple(cs.market(cs.WARM_BARS + slot(FUZZ_MESSAGES), seed=51))


@functools.cache
def fuzzed_messages() -> tuple[tuple[dict[bytes, bytes], str | None], ...]:
    """10k fuzzed entries of the ES stream, each with what the parser made of it (``None``: a
    bar; else the MalformedMessage code). The parser must never raise anything else; hypothesis
    draws them, five an example (derandomized: the same 10k every run)."""
    base = stream_bars()[cs.WARM_BARS:]
    out: list[tuple[dict[bytes, bytes], str | None]] = []

    @settings(FUZZ, max_examples=FUZZ_MESSAGES // PER_EXAMPLE)
    @given(st.lists(st.lists(_mutation, max_size=3), min_size=PER_EXAMPLE,
                    max_size=PER_EXAMPLE))
    def parse(batch: list[list[tuple[Any, ...]]]) -> None:
        for mutations in batch:
            b = base[slot(len(out))]
            fields = _mutate({k.encode(): v.encode()
                              for k, v in encode_bar(ts_ns(b), b).items()}, mutations)
            try:
                t, bar = decode_message(fields, "ES")
            except MalformedMessage as exc:  # a coded rejection, and nothing else may escape
                code = exc.code
            else:
                code = None
            if code is not None:
                assert code in REJECT_CODES
                out.append((fields, code))
                continue
            assert bar.symbol == "ES"
            assert t > 0
            assert t % 1000 == 0
            assert all(math.isfinite(v) for v in (bar.open, bar.high, bar.low, bar.close,
                                                  bar.volume))
            out.append((fields, None))

    parse()
    return tuple(out)


@pytest.mark.slow
def test_10k_fuzzed_stream_messages_make_the_parser_return_a_bar_or_a_coded_rejection():
    messages = fuzzed_messages()
    assert len(messages) >= FUZZ_MESSAGES
    codes = Counter(code or "bar" for _, code in messages)
    assert set(codes) - {"bar"} <= set(REJECT_CODES)
    assert codes["bar"] > 0
    assert sum(codes.values()) - codes["bar"] > FUZZ_MESSAGES // 2
    cs.record_case("fuzz_messages_parser", {"messages": len(messages), "outcomes": dict(codes)})


def _good_bar(fields: dict[bytes, bytes]) -> bool:
    # an independent reading of "a bar the loop may trade on": parses, positive prices in OHLC
    # order, a volume that is not negative (the inline validator's rules before ts and jumps)
    try:
        _, b = decode_message(fields, "ES")
    except MalformedMessage:
        return False
    return (min(b.open, b.high, b.low, b.close) > 0 and b.low <= min(b.open, b.close)
            and b.high >= max(b.open, b.close) and b.volume >= 0)


@pytest.mark.slow
def test_10k_fuzzed_stream_messages_through_redis_and_the_loop_crash_nothing_and_order_nothing(
        bundle, tmp_path):
    client = cs.redis_or_skip()
    messages = fuzzed_messages()
    p = cs.params(data_fault_limit=1_000_000)
    bars = stream_bars()
    base = bars[cs.WARM_BARS:]
    rig = cs.build_rig(tmp_path / "state", p, bundle, bars, snapshot_ns=10**18)
    try:
        with cs.private_prefix(client, "fuzz") as prefix:
            key = stream_key("ES", prefix)
            pipe = client.pipeline(transaction=False)
            good: set[int] = set()  # entry indexes of the good bars
            fuzzed: dict[int, dict[bytes, bytes]] = {}
            for i, (fields, _) in enumerate(messages):
                if i % PER_GOOD == 0:
                    g = base[slot(i) - 1]
                    good.add(len(good) + len(fuzzed))
                    pipe.xadd(key, encode_bar(ts_ns(g), g))
                fuzzed[len(good) + len(fuzzed)] = fields
                pipe.xadd(key, fields)
            ids = [x.decode() for x in pipe.execute()]
            kinds = {ids[n]: True if n in good else _good_bar(fuzzed[n])
                     for n in range(len(ids))}
            malformed = sum(code is not None for _, code in messages)
            feed = RedisStreamFeed(cs.REDIS_URL, ["ES"], group="executor", consumer="c1",
                                   prefix=prefix, start_id="0", block_ms=100, count=500)
            accepted: dict[str, int] = {}
            seen: Counter[str] = Counter()
            last = ids[-1]
            t0 = time.monotonic()

            def events() -> Iterator[Any]:
                done = 0
                for ev in feed:
                    before = rig.executor.stats.bars
                    yield ev
                    seen[type(ev).__name__] += 1
                    if isinstance(ev, FeedItem):
                        if rig.executor.stats.bars == before + 1:
                            accepted[ev.source_id.split("/", 1)[1]] = ev.ts_ns
                        done += 1
                    if seen["FeedItem"] + seen["BadMessage"] == len(ids):
                        return
                    assert time.monotonic() - t0 < 300, f"stalled at {dict(seen)} of {last}"

            stats = rig.executor.run(events())
            feed.close()
            dead = client.xlen(dead_letter_key(key))
            pending = int(client.xpending(key, "executor")["pending"])
        orders = [r.payload for r in rig.journal.read("order") if r.payload["action"] == "submit"]
    finally:
        rig.close()
    assert seen["BadMessage"] == malformed == dead  # every malformed entry dead-lettered
    assert seen["FeedItem"] == len(ids) - malformed
    assert pending == 0
    assert all(kinds[i] for i in accepted)  # the loop took only messages that are good bars
    at = set(accepted.values())
    assert all(o["created_ns"] in at for o in orders)  # every order follows an accepted bar
    assert len(orders) > 0
    a = cs.audit(tmp_path / "state")
    assert cs.inconsistencies(a) == []
    fuzz_ids = {ids[n] for n in fuzzed}
    fuzz_taken = sum(1 for i in accepted if i in fuzz_ids)
    cs.record_case("fuzz_messages", {
        "messages": len(messages), "good_bars_between": len(good),
        "entries": len(ids), "malformed_dead_lettered": dead,
        "parsed_but_rejected_by_the_validator": stats.faults - malformed,
        "fuzzed_accepted_as_bars": fuzz_taken, "faults": stats.faults,
        "orders": len(orders), "orders_after_bad_data": 0, "crashes": 0})
