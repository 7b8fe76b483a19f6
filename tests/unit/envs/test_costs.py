from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mia.data.contracts import contract
from mia.envs.costs import CostModel
from mia.errors import ConfigError, DataValidationError
from tests.unit.envs._market import env_config


def _model(**kw: float) -> CostModel:
    args = dict(multiplier=50.0, tick_size=0.25, commission_per_side=2.25, slippage_ticks=0.5,
                default_spread=0.25)
    args.update(kw)
    return CostModel(**args)


def test_cost_model_from_config_reads_contract_and_env_section():
    costs = CostModel.from_config(contract("ES"), env_config())
    assert (costs.multiplier, costs.tick_size) == (50.0, 0.25)
    assert costs.commission_per_side == 2.25
    assert costs.slippage == 0.5 * 0.25
    assert costs.default_spread == 1.0 * 0.25  # default_spread_ticks x tick
    # one ES contract: 2.25 commission + (half a 1-tick spread + half a tick slippage) x $50
    assert costs.cost(1) == pytest.approx(2.25 + (0.125 + 0.125) * 50.0)
    mnq = CostModel.from_config(contract("MNQ"), env_config())
    assert mnq.cost(-3) == pytest.approx(3 * (2.25 + 0.25 * 2.0))


def test_fill_price_moves_against_the_order_by_half_spread_plus_slippage():
    costs = _model()
    assert costs.fill_price(4800.0, 2, spread=0.5) == 4800.0 + 0.25 + 0.125
    assert costs.fill_price(4800.0, -1, spread=0.5) == 4800.0 - 0.25 - 0.125
    assert costs.fill_price(4800.0, 0, spread=0.5) == 4800.0
    assert costs.fill_price(4800.0, 1) == 4800.0 + 0.125 + 0.125  # default spread: 1 tick


def test_pnl_with_fill_prices_equals_reference_pnl_minus_cost():
    # mark-to-market with cash: trades pay fill prices and commissions; the reference books the
    # same positions at the open and subtracts CostModel.cost of each change
    rng = np.random.default_rng(3)
    costs = _model()
    n = 200
    opens = 4800 + np.cumsum(rng.normal(0, 1, n))
    spreads = 0.25 * rng.integers(1, 5, n)
    positions = np.r_[0, rng.integers(-5, 6, n - 1)]
    cash, held = 0.0, 0
    reference = 0.0
    for t in range(n):
        q = int(positions[t]) - held
        fill = costs.fill_price(opens[t], q, spread=spreads[t])
        cash -= q * fill * costs.multiplier + abs(q) * costs.commission_per_side
        if t > 0:
            reference += held * (opens[t] - opens[t - 1]) * costs.multiplier
        reference -= costs.cost(q, spread=spreads[t])
        held = int(positions[t])
    final_mark = held * opens[-1] * costs.multiplier
    assert cash + final_mark == pytest.approx(reference, abs=1e-6)


def test_round_trip_spread_cost_equals_reference_slippage_estimate():
    # reference: slippage_estimate = bid_ask_spread x order_volume, our order size = 3
    costs = _model(commission_per_side=0.0, slippage_ticks=0.0)
    spread = 0.75
    round_trip = costs.cost(3, spread) + costs.cost(-3, spread)
    assert round_trip == pytest.approx(spread * 3 * costs.multiplier)


def test_unit_costs_use_bar_spreads_or_the_default():
    costs = _model()
    spread = np.array([0.25, 0.5, 1.0])
    per_bar = costs.unit_costs(3, spread)
    assert per_bar.tolist() == pytest.approx([costs.cost(1, s) for s in spread])
    assert costs.unit_costs(3).tolist() == [costs.cost(1)] * 3


@pytest.mark.parametrize("bad", [-0.25, np.nan, np.inf])
def test_bad_bar_spread_is_rejected_with_its_row(bad):
    with pytest.raises(DataValidationError, match="row 1"):
        _model().unit_costs(3, np.array([0.25, bad, 0.25]))
    with pytest.raises(DataValidationError, match="finite and >= 0"):
        _model().cost(1, bad)


def test_spread_of_the_wrong_length_is_rejected():
    with pytest.raises(DataValidationError, match="one spread per bar"):
        _model().unit_costs(3, np.array([0.25, 0.25]))


@pytest.mark.parametrize("field", ["multiplier", "tick_size"])
def test_cost_model_rejects_non_positive_contract_facts(field):
    with pytest.raises(ConfigError, match=field):
        _model(**{field: 0.0})


def test_negative_commission_is_rejected():
    with pytest.raises(ConfigError, match="commission_per_side"):
        _model(commission_per_side=-1.0)


def test_executor_side_modules_import_no_training_stack():
    # the paper broker and the executor import the cost model and the normaliser
    code = ("import sys, mia.envs.costs, mia.envs.market, mia.features.normalize, "
            "mia.backtest.simulate; heavy = ('gymnasium', 'torch', 'stable_baselines3', "
            "'sklearn', 'mlflow'); print([m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
