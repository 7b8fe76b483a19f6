"""The CVaR of a book's closed trades: measured by the engine from its fills, read by the cut."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime

import pytest

from mia.risk import RiskEngine, restore, snapshot
from mia.risk.cvar import TradeRecord
from mia.risk.stops import TradeRisk
from tests.unit.risk._rules import codes, quiet, rules

T0 = int(datetime(2024, 1, 2, 15, 0, tzinfo=UTC).timestamp() * 1e9)
MIN = 60_000_000_000
EQUITY = 250_000.0


def _long(qty: int, entry: float) -> TradeRisk:
    return TradeRisk(1, qty, qty, entry, 8.0, entry - 8.0, entry, None, qty, T0)


def test_cvar_is_the_mean_loss_of_the_worst_tail_of_the_window():
    rec = TradeRecord(100, 0.95, 20, returns=[0.01] * 90 + [-0.02, -0.04, -0.06, -0.08, -0.10]
                      + [0.005] * 5)
    assert rec.cvar_loss == pytest.approx((0.02 + 0.04 + 0.06 + 0.08 + 0.10) / 5)
    # the window keeps the last 100: five more winners push the first five winners out only
    for _ in range(5):
        rec.on_fill(_long(1, 4000.0), None, -1, 4010.0, 50.0, EQUITY)
    assert len(rec.returns) == 100
    assert rec.cvar_loss == pytest.approx(0.06)


def test_not_measured_before_min_trades_and_zero_when_even_the_tail_made_money():
    rec = TradeRecord(100, 0.95, 20, returns=[-0.5] * 19)
    assert math.isnan(rec.cvar_loss)
    winners = TradeRecord(100, 0.95, 20, returns=[0.01] * 20)
    assert winners.cvar_loss == 0.0


def test_a_trade_closed_in_parts_is_one_return_over_the_equity_at_its_close():
    rec = TradeRecord(100, 0.95, 1)
    t = _long(4, 4000.0)
    rec.on_fill(None, t, 4, 4000.0, 50.0, EQUITY)  # opens: nothing realised
    rec.on_fill(t, t._replace(qty=6, peak_qty=6), 2, 4001.0, 50.0, EQUITY)  # adds
    assert (len(rec.returns), rec.open_pnl) == (0, 0.0)
    half = t._replace(qty=2)
    rec.on_fill(t, half, -2, 4016.0, 50.0, EQUITY)  # +16 points x 2 x $50
    assert rec.open_pnl == 1600.0
    assert len(rec.returns) == 0
    rec.on_fill(half, None, -2, 3992.0, 50.0, 260_000.0)  # -8 points x 2 x $50
    assert list(rec.returns) == [pytest.approx(800.0 / 260_000.0)]
    assert rec.open_pnl == 0.0
    # a flip closes the long (all 3) and opens a short: one return, the short starts afresh
    rec.on_fill(_long(3, 4000.0), _long(1, 3990.0)._replace(side=-1), -4, 3990.0, 50.0,
                EQUITY)
    assert rec.returns[-1] == pytest.approx(-1500.0 / EQUITY)


def test_the_engine_measures_it_from_its_fills_and_cuts_leverage_past_the_limit():
    es = rules("ES", cvar_min_trades=5, cvar_trades=10)
    eng = RiskEngine(es, equity=EQUITY, trade_date=date(2024, 1, 2), now_ns=T0)
    f = quiet(cvar_loss=math.nan)  # a FeatureTap row: cvar_loss is no feature
    first = eng.decide(1.0, position=0, equity=EQUITY, price=4000.0, features=f)
    assert "skip.cvar_loss" in codes(first)  # not measured yet: no cut
    for i in range(5):  # five long trades, each losing 1000 points x the contracts: big losses
        d = eng.decide(1.0, position=0, equity=EQUITY, price=4000.0, features=f)
        eng.on_fill(d.order, 4000.0, now_ns=T0 + i * MIN)
        eng.on_fill(-d.order, 3000.0, now_ns=T0 + i * MIN + 1)
    assert len(eng.record.returns) == 5
    assert eng.cvar_loss > es.cfg.cut_cvar_loss
    cut = eng.decide(1.0, position=0, equity=EQUITY, price=4000.0, features=f)
    assert "leverage.cut_cvar" in codes(cut)
    assert "skip.cvar_loss" not in codes(cut)
    # a caller that measures its own passes it in and the engine's is not read
    own = eng.decide(1.0, position=0, equity=EQUITY, price=4000.0, features=quiet(cvar_loss=0.0))
    assert "leverage.cut_cvar" not in codes(own)


def test_the_record_travels_in_the_snapshot_and_old_snapshots_restore_empty():
    es = rules("ES", cvar_min_trades=1)
    eng = RiskEngine(es, equity=EQUITY, trade_date=date(2024, 1, 2), now_ns=T0)
    d = eng.decide(1.0, position=0, equity=EQUITY, price=4000.0, features=quiet())
    eng.on_fill(d.order, 4000.0, now_ns=T0)
    eng.on_fill(-d.order, 3990.0, now_ns=T0 + MIN)
    eng.on_fill(d.order, 4000.0, now_ns=T0 + 2 * MIN, plan=d.plan)
    eng.on_fill(-1, 4004.0, now_ns=T0 + 3 * MIN)  # part of the second trade realised
    snap = json.loads(json.dumps(snapshot(eng), allow_nan=False))
    back = restore(es, snap)
    assert list(back.record.returns) == list(eng.record.returns)
    assert back.record.open_pnl == eng.record.open_pnl == 4.0 * 50.0
    assert back.cvar_loss == eng.cvar_loss > 0.0
    old = {k: v for k, v in snap.items() if not k.startswith("trade_") or k == "trade"}
    assert math.isnan(restore(es, old).cvar_loss)


@pytest.mark.parametrize(("key", "value", "match"), [
    ("cvar_min_trades", 200, "never be measured"), ("cvar_alpha", 1.0, "below 1"),
])
def test_bad_cvar_settings_are_config_errors(key, value, match):
    from mia.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        rules("ES", **{key: value})
