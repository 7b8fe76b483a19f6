"""``executor.yaml``: the annotated example loads, every error names its key, secrets stay out."""

from __future__ import annotations

import dataclasses
import re
import secrets
from pathlib import Path

import pytest
import yaml

from executor.settings import AlertSettings, ExecutorSettings, RollbackSettings, load_settings
from mia.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "docker" / "executor.example.yaml"
MINIMAL = """\
symbol: ES
state_dir: /tmp/mia-state
feed: {kind: replay}
models: {source: local, production: /opt/mia/bundles/es}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "executor.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    return str(info.value)


def test_the_annotated_example_loads_as_a_live_deployment():
    s = load_settings(EXAMPLE)
    assert (s.symbol, s.cross_symbol, s.routing) == ("ES", "MNQ", "split")
    assert s.feed.kind == "redis"
    assert s.models.source == "mlflow"
    assert s.state_path == Path("/var/lib/mia/executor")
    assert s.kill_file == "/var/lib/mia/executor/KILL"  # the admin endpoint needs it
    assert (s.admin_token_env, s.webhook_env) == ("MIA_ADMIN_TOKEN", "MIA_ALERT_WEBHOOK")


def test_the_example_sets_every_setting_so_the_annotations_cover_them_all():
    doc = yaml.safe_load(EXAMPLE.read_text())
    assert set(doc) == {f.name for f in dataclasses.fields(ExecutorSettings)}
    assert set(doc["rollback"]) == {f.name for f in dataclasses.fields(RollbackSettings)}
    assert set(doc["alerts"]) == {f.name for f in dataclasses.fields(AlertSettings)}


def test_the_operator_guide_shows_the_example_verbatim():
    guide = (REPO / "docs" / "executor.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", guide, flags=re.S)
    assert EXAMPLE.read_text() in blocks


def test_a_minimal_file_gets_the_documented_defaults(tmp_path):
    s = load_settings(write(tmp_path, MINIMAL))
    assert s.cross_symbol is None
    assert (s.routing, s.flatten_on_stop, s.kill_file, s.admin_port) == ("split", False, None,
                                                                         9109)
    assert s.rollback.max_drawdown == 0.03
    assert s.feed.speed == 0.0


def test_an_unknown_key_is_named_with_the_nearest_known_one(tmp_path):
    msg = error_of(tmp_path, MINIMAL.replace("feed: {kind: replay}",
                                             "feed: {kind: replay, speedd: 2}"))
    assert "feed.speedd: unknown key; did you mean 'speed'?" in msg
    assert str(tmp_path / "executor.yaml") in msg


def test_a_missing_required_key_is_named(tmp_path):
    msg = error_of(tmp_path, MINIMAL.replace("state_dir: /tmp/mia-state\n", ""))
    assert "state_dir" in msg


def test_a_value_outside_its_choices_names_the_key_and_the_choices(tmp_path):
    msg = error_of(tmp_path, MINIMAL + "routing: blend\n")
    assert "routing: expected 'split' or 'overlap' or 'shadow', got str 'blend'" in msg


def test_an_out_of_range_number_names_its_nested_key_and_range(tmp_path):
    msg = error_of(tmp_path, MINIMAL + "rollback: {max_drawdown: 0}\n")
    assert "rollback.max_drawdown: 0.0 is out of range; expected (0, 1]" in msg


def test_every_problem_is_reported_at_once(tmp_path):
    msg = error_of(tmp_path, MINIMAL + "routing: blend\noverlap_days: -1\nfoo: 1\n")
    assert len(msg.splitlines()) == 3
    assert all(k in msg for k in ("routing", "overlap_days", "foo"))


def test_a_duplicate_key_is_an_error_not_a_silent_override(tmp_path):
    msg = error_of(tmp_path, MINIMAL + "symbol: MNQ\n")
    assert "duplicate key 'symbol'" in msg


def test_trading_the_cross_symbol_itself_is_refused(tmp_path):
    msg = error_of(tmp_path, MINIMAL + "cross_symbol: ES\n")
    assert "cross_symbol: ES is the traded symbol; use the other" in msg


def test_local_models_without_a_production_path_are_refused(tmp_path):
    msg = error_of(tmp_path, MINIMAL.replace(", production: /opt/mia/bundles/es", ""))
    assert "models.production: source is 'local' but no bundle path is given" in msg


@pytest.mark.parametrize("key", ["admin_token", "webhook_url", "webhook"])
def test_a_secret_written_into_the_file_is_refused_as_an_unknown_key(tmp_path, key):
    msg = error_of(tmp_path, MINIMAL + f"{key}: s3cr3t\n")
    assert f"{key}: unknown key" in msg


def test_secrets_are_only_ever_named_never_held_by_the_settings():
    secretish = [f.name for f in dataclasses.fields(ExecutorSettings)
                 if re.search(r"token|webhook|password|secret|key", f.name)]
    assert secretish == ["admin_token_env", "webhook_env"]


def test_a_token_pasted_in_place_of_the_variable_name_is_refused_without_echoing_it(tmp_path):
    token = secrets.token_hex(16)
    msg = error_of(tmp_path, MINIMAL + f"admin_token_env: {token}\n")
    assert "admin_token_env" in msg
    assert token not in msg


def test_a_webhook_url_pasted_in_place_of_the_variable_name_is_refused_without_echoing_it(
        tmp_path):
    url = "https://hooks.slack.com/services/T000/B000/" + secrets.token_hex(12)
    msg = error_of(tmp_path, MINIMAL + f"webhook_env: '{url}'\n")
    assert "webhook_env" in msg
    assert "MIA_ALERT_WEBHOOK" in msg
    assert url not in msg
    assert "hooks.slack.com" not in msg


def test_variable_names_of_the_operators_choice_are_kept(tmp_path):
    s = load_settings(write(tmp_path, MINIMAL + "admin_token_env: DESK_A_ADMIN_TOKEN\n"
                            "webhook_env: DESK_A_WEBHOOK\n"))
    assert (s.admin_token_env, s.webhook_env) == ("DESK_A_ADMIN_TOKEN", "DESK_A_WEBHOOK")


def test_alerts_default_to_no_extra_fields_and_the_systemd_memory_high(tmp_path):
    s = load_settings(write(tmp_path, MINIMAL))
    assert s.alerts.webhook_fields == {}
    assert s.alerts.memory_high_mb == 1024.0
    assert s.alerts.memory_high_bytes == 2**30  # MemoryHigh=1G of the systemd unit
    unit = (REPO / "docker" / "systemd" / "mia-executor.service").read_text()
    assert "MemoryHigh=1G" in unit


def test_webhook_fields_from_the_file_carry_scalars_into_the_body(tmp_path):
    s = load_settings(write(tmp_path, MINIMAL + "alerts:\n  webhook_fields:\n"
                            "    chat_id: '-1001234567890'\n    disable_notification: true\n"
                            "    thread: 7\n  memory_high_mb: 800\n"))
    assert s.alerts.webhook_fields == {"chat_id": "-1001234567890",
                                       "disable_notification": True, "thread": 7}
    assert s.alerts.memory_high_mb == 800.0


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [("{webhook_fields: {text: hi}}",
      "alerts.webhook_fields: ['text'] would replace the body's own fields"),
     ("{webhook_fields: {chat_id: {id: 1}}}",
      "alerts.webhook_fields.chat_id: expected str or int or float or bool, got mapping"),
     ("{webhook_fields: {chat_id: null}}", "alerts.webhook_fields.chat_id: expected str"),
     ("{webhook_fields: [chat_id]}", "alerts.webhook_fields: expected mapping"),
     ("{memory_high_mb: 0}", "alerts.memory_high_mb: 0.0 is out of range; expected > 0"),
     ("{webhook_url: x}", "alerts.webhook_url: unknown key")],
)
def test_bad_alert_settings_name_their_key(tmp_path, alerts, expected):
    assert expected in error_of(tmp_path, MINIMAL + f"alerts: {alerts}\n")


def test_a_redis_password_in_the_url_is_refused_without_echoing_it(tmp_path):
    password = secrets.token_hex(8)
    text = MINIMAL.replace("{kind: replay}", f"{{kind: redis, url: 'redis://:{password}@h:6379/0'}}")
    msg = error_of(tmp_path, text)
    assert "feed.url_env" in msg
    assert password not in msg


def test_the_redis_url_comes_from_the_variable_url_env_names(tmp_path):
    text = MINIMAL.replace("{kind: replay}", "{kind: redis, url_env: DESK_REDIS_URL}")
    feed = load_settings(write(tmp_path, text)).feed
    assert feed.redis_url({"DESK_REDIS_URL": "redis://:pw@10.0.0.5:6379/2"}) == (
        "redis://:pw@10.0.0.5:6379/2")
    with pytest.raises(ConfigError, match="DESK_REDIS_URL is not set"):
        feed.redis_url({})
    assert load_settings(write(tmp_path, MINIMAL)).feed.redis_url({}) == "redis://127.0.0.1:6379/0"
