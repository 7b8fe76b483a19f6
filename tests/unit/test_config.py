"""Tests of :mod:`mia.config`: the repo's params.yaml, loader errors, endpoints, round trip."""

from __future__ import annotations

import copy
import dataclasses
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from mia.config import (
    AGENT_NAMES,
    AgentsConfig,
    Endpoints,
    Params,
    SACConfig,
    load_config,
    load_endpoints,
    load_params,
    parse_params,
    to_dict,
)
from mia.errors import ConfigError

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """The repo's params.yaml as plain data; tests deep-copy it before changing it."""
    data = yaml.safe_load(REPO_PARAMS.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise TypeError("params.yaml must be a mapping")
    return data


@pytest.fixture
def doc(raw: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(raw)


def _errors(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_params(doc, "params.yaml")
    return str(info.value).splitlines()


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# --- the repo's params.yaml ------------------------------------------------------------------


def test_repo_params_yaml_loads_with_reference_values() -> None:
    p = load_params(REPO_PARAMS, env={})
    assert p.data.source == "synthetic"
    assert p.data.symbols == ("ES", "MNQ")
    assert (p.data.start, p.data.end) == (date(2024, 1, 2), date(2024, 2, 29))
    assert p.data.file is None
    assert p.data.column_map == {}
    assert p.features.label_horizon == 15
    assert p.features.regime_thresholds == {"trend": 0.7, "range": 0.6, "defensive": 0.7}
    assert p.selection.n_selected == 150
    assert p.env.commission_per_side == 2.25
    assert p.agents.sac.actor_learning_rate == 3.0e-4
    assert p.agents.sac.actor_arch == (256, 128, 64)
    assert p.agents.sac.ent_coef == "auto"
    assert p.agents.ppo.learning_rate == 2.0e-4
    assert p.agents.ddpg.actor_activation == "tanh"
    assert p.agents.qrdqn.n_quantiles == 51
    assert p.walk_forward.scheme == "rolling"
    assert p.walk_forward.purge_bars == 15
    assert p.ensemble.prior_weights == {"sac": 0.4, "ppo": 0.3, "ddpg": 0.3}
    assert p.gate.auto_canary is True
    assert p.risk.max_leverage == {"trend": 5.0, "range": 3.0, "defensive": 1.0}
    assert p.risk.take_profit_r == (2.0, 4.0)
    assert p.executor.canary_steps == (0.05, 0.15, 0.5, 1.0)
    assert p.executor.metrics_port == 9108
    assert p.backup.bucket == "mia-backups"


def test_repo_params_yaml_has_exactly_the_documented_sections(raw: dict[str, Any]) -> None:
    assert list(raw) == [
        "data", "features", "selection", "drift", "env", "agents", "walk_forward",
        "ensemble", "gate", "risk", "executor", "backup", "canary_review",
    ]


def test_ppo_lagrangian_repeats_ppo_values_and_adds_cvar_keys() -> None:
    agents = load_params(REPO_PARAMS, env={}).agents
    ppo_part = {k: v for k, v in to_dict(agents.ppo_lagrangian).items() if k in to_dict(agents.ppo)}
    assert ppo_part == to_dict(agents.ppo)
    assert agents.ppo_lagrangian.cvar_alpha == 0.95
    assert agents.ppo_lagrangian.lambda_learning_rate == 0.05


def test_agent_names_match_agents_config_fields() -> None:
    assert tuple(f.name for f in dataclasses.fields(AgentsConfig)) == AGENT_NAMES


def test_int_in_yaml_is_accepted_for_float_field(doc: dict[str, Any]) -> None:
    doc["env"]["initial_equity"] = 250000
    value = parse_params(doc, "params.yaml").env.initial_equity
    assert value == 250000.0
    assert isinstance(value, float)


def test_native_yaml_date_is_accepted_for_start(doc: dict[str, Any]) -> None:
    doc["data"]["start"] = date(2024, 1, 3)
    assert parse_params(doc, "params.yaml").data.start == date(2024, 1, 3)


# --- key and type errors ---------------------------------------------------------------------


def test_unknown_key_names_path_and_suggestion(doc: dict[str, Any]) -> None:
    doc["agents"]["ppo"]["learnin_rate"] = 1.0e-4
    errors = _errors(doc)
    assert ("params.yaml: agents.ppo.learnin_rate: unknown key; did you mean 'learning_rate'?"
            in errors)


def test_unknown_section_is_rejected(doc: dict[str, Any]) -> None:
    doc["extras"] = {}
    assert any(e.startswith("params.yaml: extras: unknown key") for e in _errors(doc))


def test_missing_key_names_section_key_and_type(doc: dict[str, Any]) -> None:
    del doc["agents"]["ppo"]["learning_rate"]
    assert _errors(doc) == ["params.yaml: agents.ppo: missing key 'learning_rate' (float)"]


def test_str_for_float_names_path_expected_type_and_value(doc: dict[str, Any]) -> None:
    doc["agents"]["ppo"]["learning_rate"] = "abc"
    assert _errors(doc) == [
        "params.yaml: agents.ppo.learning_rate: expected float, got str 'abc'"
    ]


def test_exponent_without_dot_read_as_text_gets_a_hint(doc: dict[str, Any]) -> None:
    doc["agents"]["sac"]["actor_learning_rate"] = "3e-4"
    (error,) = _errors(doc)
    assert "expected float, got str '3e-4'" in error
    assert "write 3.0e-4" in error


def test_bool_for_int_is_rejected(doc: dict[str, Any]) -> None:
    doc["agents"]["qrdqn"]["batch_size"] = True
    assert _errors(doc) == ["params.yaml: agents.qrdqn.batch_size: expected int, got bool True"]


def test_bool_for_float_is_rejected(doc: dict[str, Any]) -> None:
    doc["gate"]["max_cvar"] = False
    assert _errors(doc) == ["params.yaml: gate.max_cvar: expected float, got bool False"]


def test_float_for_int_is_rejected(doc: dict[str, Any]) -> None:
    doc["agents"]["qrdqn"]["n_quantiles"] = 51.5
    assert _errors(doc) == [
        "params.yaml: agents.qrdqn.n_quantiles: expected int, got float 51.5"
    ]


def test_bad_list_element_names_its_index(doc: dict[str, Any]) -> None:
    doc["agents"]["sac"]["actor_arch"] = [256, "wide", 64]
    assert _errors(doc) == [
        "params.yaml: agents.sac.actor_arch[1]: expected int, got str 'wide'"
    ]


def test_enum_typo_lists_choices_and_suggests(doc: dict[str, Any]) -> None:
    doc["walk_forward"]["scheme"] = "rollin"
    (error,) = _errors(doc)
    assert error.startswith("params.yaml: walk_forward.scheme: expected 'rolling' or 'expanding'")
    assert "did you mean 'rolling'?" in error


def test_unknown_symbol_is_rejected(doc: dict[str, Any]) -> None:
    doc["data"]["symbols"] = ["ES", "CL"]
    assert _errors(doc) == ["params.yaml: data.symbols[1]: expected 'ES' or 'MNQ', got str 'CL'"]


def test_bad_date_string_is_rejected(doc: dict[str, Any]) -> None:
    doc["data"]["end"] = "2024-02-30"
    assert _errors(doc) == [
        "params.yaml: data.end: expected date (YYYY-MM-DD), got str '2024-02-30'"
    ]


def test_several_errors_are_reported_together(doc: dict[str, Any]) -> None:
    doc["agents"]["ppo"]["learnin_rate"] = doc["agents"]["ppo"].pop("learning_rate")
    doc["agents"]["sac"]["gamma"] = 1.5
    doc["agents"]["sac"]["batch_size"] = "64"
    doc["risk"]["max_contracts"] = 2.5
    del doc["backup"]
    errors = _errors(doc)
    assert len(errors) == 6
    assert ("params.yaml: agents.ppo.learnin_rate: unknown key; did you mean 'learning_rate'?"
            in errors)
    assert "params.yaml: agents.ppo: missing key 'learning_rate' (float)" in errors
    assert "params.yaml: agents.sac.gamma: 1.5 is out of range; expected (0, 1]" in errors
    assert "params.yaml: agents.sac.batch_size: expected int, got str '64'" in errors
    assert "params.yaml: risk.max_contracts: expected int, got float 2.5" in errors
    assert "params.yaml: missing key 'backup' (mapping)" in errors


def test_document_that_is_not_a_mapping_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"^params\.yaml: expected mapping, got null$"):
        parse_params(None, "params.yaml")


# --- range and cross-field checks ------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        (("agents", "sac"), "actor_learning_rate", 0.0, "expected > 0"),
        (("agents", "ppo"), "clip_range", 1.2, "expected (0, 1]"),
        (("agents", "ppo_lagrangian"), "cvar_alpha", 0.0, "expected (0, 1]"),
        (("risk",), "risk_per_trade", 0.0, "expected (0, 1]"),
        (("walk_forward",), "purge_bars", -1, "expected >= 0"),
        (("env",), "episode_bars", 0, "expected > 0"),
        (("executor",), "metrics_port", 70000, "expected [1, 65535]"),
    ],
)
def test_out_of_range_value_names_path_and_range(
    doc: dict[str, Any], section: tuple[str, ...], key: str, value: float, message: str
) -> None:
    target = doc
    for part in section:
        target = target[part]
    target[key] = value
    path = ".".join((*section, key))
    assert f"params.yaml: {path}: {value!r} is out of range; {message}" in _errors(doc)


def test_range_applies_to_each_mapping_value(doc: dict[str, Any]) -> None:
    doc["risk"]["max_leverage"]["trend"] = -1.0
    assert _errors(doc) == [
        "params.yaml: risk.max_leverage.trend: -1.0 is out of range; expected > 0"
    ]


def test_prior_weights_not_summing_to_one_are_rejected(doc: dict[str, Any]) -> None:
    doc["ensemble"]["prior_weights"]["sac"] = 0.5
    (error,) = _errors(doc)
    assert error.startswith("params.yaml: ensemble.prior_weights: weights sum to 1.1")


def test_prior_weights_for_unknown_agent_are_rejected(doc: dict[str, Any]) -> None:
    doc["ensemble"]["prior_weights"] = {"sac": 0.5, "a2c": 0.5}
    (error,) = _errors(doc)
    assert "ensemble.prior_weights: unknown agents ['a2c']" in error


def test_start_after_end_is_rejected(doc: dict[str, Any]) -> None:
    doc["data"]["start"] = "2024-03-01"
    assert _errors(doc) == [
        "params.yaml: data.start: 2024-03-01 is after end 2024-02-29; swap them"
    ]


def test_purge_shorter_than_label_horizon_is_rejected(doc: dict[str, Any]) -> None:
    doc["walk_forward"]["purge_bars"] = 10
    (error,) = _errors(doc)
    assert error.startswith("params.yaml: walk_forward.purge_bars: 10 is below "
                            "features.label_horizon 15")


def test_risk_limit_above_the_training_env_limit_is_rejected(doc: dict[str, Any]) -> None:
    doc["risk"]["max_contracts"] = 10
    (error,) = _errors(doc)
    assert error.startswith("params.yaml: risk.max_contracts: 10 exceeds env.max_contracts 5")


def test_file_source_without_file_is_rejected(doc: dict[str, Any]) -> None:
    doc["data"]["source"] = "file"
    (error,) = _errors(doc)
    assert error.startswith("params.yaml: data.file: source is 'file' but file is null")


def test_file_source_with_file_and_timezone_is_accepted(doc: dict[str, Any]) -> None:
    doc["data"].update(source="file", file="bars.csv", tz="America/Chicago",
                       column_map={"Close": "close"})
    data = parse_params(doc, "params.yaml").data
    assert (data.file, data.tz, data.column_map) == ("bars.csv", "America/Chicago",
                                                     {"Close": "close"})


def test_unknown_timezone_is_rejected(doc: dict[str, Any]) -> None:
    doc["data"]["tz"] = "Mars/Olympus"
    (error,) = _errors(doc)
    assert error.startswith("params.yaml: data.tz: unknown time zone 'Mars/Olympus'")


def test_canary_steps_not_increasing_are_rejected(doc: dict[str, Any]) -> None:
    doc["executor"]["canary_steps"] = [0.05, 0.5, 0.15]
    (error,) = _errors(doc)
    assert error.startswith("params.yaml: executor.canary_steps: need increasing shares")


def test_canary_step_above_one_is_rejected(doc: dict[str, Any]) -> None:
    doc["executor"]["canary_steps"] = [0.5, 1.5]
    assert _errors(doc) == [
        "params.yaml: executor.canary_steps[1]: 1.5 is out of range; expected (0, 1]"
    ]


def test_direct_construction_also_checks_ranges() -> None:
    with pytest.raises(ConfigError, match=r"SACConfig\.gamma: 2\.0 is out of range"):
        SACConfig(actor_arch=(64,), critic_arch=(64,), activation="relu",
                  actor_learning_rate=1e-3, critic_learning_rate=1e-3, batch_size=8,
                  gamma=2.0, buffer_size=100, ent_coef="auto", tau=0.01, total_timesteps=64)


# --- files -----------------------------------------------------------------------------------


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  source: synthetic\n  symbols: [ES, MNQ\nfeatures: {}\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_params(path, env={})
    message = str(info.value)
    assert message.startswith(f"{path}: invalid YAML at line 4")


def test_duplicate_yaml_key_is_rejected_with_line(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  seed: 7\n  seed: 8\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 3, column 3: duplicate key 'seed'"):
        load_params(path, env={})


def test_errors_name_the_file_they_came_from(tmp_path: Path, doc: dict[str, Any]) -> None:
    doc["drift"]["psi_threshold"] = "high"
    path = _write(tmp_path, doc)
    with pytest.raises(ConfigError, match=f"^{path}: drift.psi_threshold: expected float"):
        load_params(path, env={})


def test_missing_file_says_where_it_looked_and_how_to_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_params(missing, env={})
    message = str(info.value)
    assert str(missing) in message
    assert "--params PATH" in message
    assert "MIA_PARAMS" in message


def test_mia_params_env_is_used_when_no_path_given(tmp_path: Path, raw: dict[str, Any]) -> None:
    path = _write(tmp_path, raw)
    cfg = load_config(env={"MIA_PARAMS": str(path), "MIA_HOME": str(tmp_path / "home")})
    assert cfg.params_path == path.resolve()
    assert cfg.params == load_params(REPO_PARAMS, env={})


def test_default_params_path_is_cwd_params_yaml(
    tmp_path: Path, raw: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, raw)
    monkeypatch.chdir(tmp_path)
    assert load_config(env={}).params_path == tmp_path.resolve() / "params.yaml"


def test_default_params_path_missing_mentions_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="MIA_PARAMS") as info:
        load_params(env={})
    assert str(tmp_path / "params.yaml") in str(info.value)


# --- endpoints -------------------------------------------------------------------------------


def test_endpoint_defaults_live_under_mia_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ep = load_endpoints({})
    home = tmp_path.resolve() / ".mia"
    assert ep == Endpoints(
        mia_home=home,
        mlflow_tracking_uri=f"sqlite:///{home.as_posix()}/mlflow.db",
        mlflow_artifact_root=str(home / "mlartifacts"),
        s3_endpoint_url=None,
        aws_region=None,
        aws_access_key_id_set=False,
    )
    assert ep.mia_home.is_absolute()


def test_env_overrides_mia_home_and_tracking_uri(tmp_path: Path) -> None:
    ep = load_endpoints({
        "MIA_HOME": str(tmp_path / "state"),
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "AWS_ENDPOINT_URL": "http://minio:9000",
        "MLFLOW_S3_ENDPOINT_URL": "http://other:9000",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    })
    assert ep.mia_home == (tmp_path / "state").resolve()
    assert ep.mlflow_tracking_uri == "http://mlflow:5000"
    assert ep.mlflow_artifact_root == str((tmp_path / "state").resolve() / "mlartifacts")
    assert ep.s3_endpoint_url == "http://minio:9000"
    assert ep.aws_region == "us-east-1"
    assert ep.aws_access_key_id_set is True
    assert "AKIAEXAMPLE" not in repr(ep)


def test_mlflow_s3_endpoint_is_used_when_aws_endpoint_unset(tmp_path: Path) -> None:
    ep = load_endpoints({"MIA_HOME": str(tmp_path), "MLFLOW_S3_ENDPOINT_URL": "http://m:9000"})
    assert ep.s3_endpoint_url == "http://m:9000"


def test_mia_home_pointing_at_a_file_is_rejected(tmp_path: Path) -> None:
    a_file = tmp_path / "home"
    a_file.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="point MIA_HOME at a directory"):
        load_endpoints({"MIA_HOME": str(a_file)})


# --- round trip and immutability -------------------------------------------------------------


def test_to_dict_round_trips_through_parse_params() -> None:
    params = load_params(REPO_PARAMS, env={})
    assert parse_params(to_dict(params), "roundtrip") == params


def test_to_dict_round_trips_through_yaml_text(tmp_path: Path) -> None:
    params = load_params(REPO_PARAMS, env={})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(to_dict(params), sort_keys=False), encoding="utf-8")
    assert load_params(path, env={}) == params


def test_to_dict_of_config_is_plain_yaml_data(tmp_path: Path) -> None:
    cfg = load_config(REPO_PARAMS, env={"MIA_HOME": str(tmp_path)})
    data = to_dict(cfg)
    assert data["params"]["data"]["start"] == "2024-01-02"
    assert data["params"]["agents"]["sac"]["actor_arch"] == [256, 128, 64]
    assert data["endpoints"]["mia_home"] == str(tmp_path.resolve())
    assert data["params_path"] == str(REPO_PARAMS)
    assert yaml.safe_load(yaml.safe_dump(data, sort_keys=False)) == data


def test_to_dict_of_non_dataclass_raises_type_error() -> None:
    with pytest.raises(TypeError, match="config dataclass instance"):
        to_dict({"a": 1})


def test_config_dataclasses_are_frozen(tmp_path: Path) -> None:
    cfg = load_config(REPO_PARAMS, env={"MIA_HOME": str(tmp_path)})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.params.agents.sac.gamma = 0.5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.endpoints.mia_home = tmp_path  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.params = cfg.params  # type: ignore[misc]


def test_config_dataclasses_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Params(*range(12))  # type: ignore[call-arg]
