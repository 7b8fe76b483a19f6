"""The demo's quick profile: params.demo.yaml laid over params.yaml (mia.commands.demo)."""

from __future__ import annotations

import pytest
import yaml

from mia.commands.demo import overlay_onto, overlay_path, write_profile
from mia.commands.demo_replay import held_out_dates
from mia.errors import ConfigError
from tests.integration.conftest import REPO


def test_an_overlay_merges_mappings_and_replaces_values():
    base = {"agents": {"sac": {"actor_arch": [256, 128], "gamma": 0.99, "tau": 0.005}},
            "data": {"end": "2024-02-29"}}
    out = overlay_onto(base, {"agents": {"sac": {"actor_arch": [64, 64], "gamma": 0.5}}},
                       source="o.yaml")
    assert out == {"agents": {"sac": {"actor_arch": [64, 64], "gamma": 0.5, "tau": 0.005}},
                   "data": {"end": "2024-02-29"}}
    assert base["agents"]["sac"]["gamma"] == 0.99  # the base is not modified


def test_an_overlay_key_params_yaml_lacks_is_an_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"o\.yaml: agents\.sac\.gama: params\.yaml has no such "
                                          r"key.*known here: gamma"):
        overlay_onto({"agents": {"sac": {"gamma": 0.99}}}, {"agents": {"sac": {"gama": 0.5}}},
                     source="o.yaml")


def test_an_overlay_mapping_over_a_value_is_an_error():
    with pytest.raises(ConfigError, match=r"o\.yaml: data\.end: a mapping"):
        overlay_onto({"data": {"end": "2024-02-29"}}, {"data": {"end": {"x": 1}}},
                     source="o.yaml")


def test_the_quick_profile_loads_and_changes_only_what_its_file_says(tmp_path):
    from mia.config import load_params

    out = write_profile(REPO / "params.yaml", overlay_path(), tmp_path / "demo" / "params.yaml")
    quick, full = load_params(out), load_params(REPO / "params.yaml")
    assert quick.data.planted_alpha > 0  # the gate can only pass on a learnable edge
    assert quick.risk == full.risk  # the rules traded under are the real ones
    assert quick.gate == full.gate
    assert quick.executor == full.executor
    changed = yaml.safe_load(overlay_path().read_text())
    assert set(changed) <= set(yaml.safe_load((REPO / "params.yaml").read_text()))
    assert out.read_text().startswith("# written by `mia demo`")


def test_the_quick_profile_data_fits_its_walk_forward_and_holds_a_held_out_session(tmp_path):
    from mia.config import load_params
    from mia.data.calendar import session_index, trade_dates
    from mia.features.registry import registry
    from mia.features.spec import make_spec
    from mia.training.layout import plan

    p = load_params(write_profile(REPO / "params.yaml", overlay_path(), tmp_path / "p.yaml"))
    ts = session_index(p.data.start, p.data.end)
    reg = registry()
    # the widest warm-up any feature has (regime features need a fitted HMM to be specified)
    warmup = make_spec([n for n in reg if "regime" not in reg[n].groups]).warmup
    layout = plan(p.walk_forward, len(ts), warmup)
    assert len(layout.folds) == 2
    days, whole = held_out_dates(list(trade_dates(ts)), p.walk_forward.holdout_bars)
    assert whole
    assert [d.isoformat() for d in days] == ["2024-01-26"]
