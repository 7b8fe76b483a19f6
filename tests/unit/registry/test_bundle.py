"""The policy bundle: written atomically, read back whole, refused when incomplete or tampered,
acting like the SB3 agents on the env's observations, with no torch, SB3 or pickle."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mia.config import Params, load_params
from mia.data.contracts import contract
from mia.envs.market import Market
from mia.errors import OperationalError
from mia.features.normalize import Normalizer
from mia.features.registry import registry
from mia.features.spec import FeatureSpec, SpecError, make_spec
from mia.registry.bundle import FORMAT_VERSION, MANIFEST, Bundle, content_hash, read_bundle
from mia.registry.bundle_writer import write_bundle
from mia.registry.policy import Policy

REPO = Path(__file__).resolve().parents[3]
AGENT_NAMES = ("sac", "ppo", "ddpg", "ppo_lagrangian", "qrdqn")
ENSEMBLE = {"weights": {"sac": 0.4, "ppo": 0.3, "ddpg": 0.3}, "confidence_threshold": 0.65,
            "vote": {"kind": "bayesian", "prior": [0.4, 0.3, 0.3]}}
CREATED = datetime(2024, 3, 1, 22, 5, tzinfo=timezone(timedelta(hours=-5)))


@cache
def params() -> Params:
    return load_params(REPO / "params.yaml", env={})


@cache
def spec_market(n_features: int = 12, n: int = 400, seed: int = 0
                ) -> tuple[FeatureSpec, Normalizer, Market, np.ndarray]:
    """A buildable spec of registry features, raw rows, their normaliser and an env market."""
    names = [k for k, d in registry().items() if "regime" not in d.groups][:n_features]
    spec = make_spec(names)
    rng = np.random.default_rng(seed)
    raw = rng.standard_normal((n, n_features)) * 3.0 + 1.0
    norm = Normalizer.fit(raw, spec.names, slice(0, n // 2))
    tick = contract("ES").tick_size
    close = 4800.0 + tick * np.cumsum(rng.integers(-4, 5, n))
    open_ = np.r_[close[0], close[:-1]] + tick * rng.integers(-1, 2, n)
    market = Market(features=norm.transform(raw), names=spec.names, open=open_, close=close,
                    spread=None, spec=contract("ES"), bound=norm.clip)
    return spec, norm, market, raw


def make_env(name: str, *, evaluate: bool = False) -> Any:
    from mia.agents import action_kind
    from mia.envs.trading_env import TradingEnv

    market = spec_market()[2]
    return TradingEnv(market, [slice(0, len(market.close))], params().env,
                      discrete=action_kind(name) == "discrete", evaluate=evaluate)


# The last layer of each agent's acting network, and a gain on it (see agents()).
HEADS: dict[str, tuple[Any, float]] = {
    "sac": (lambda m: m.policy.actor.mu, 6.0),
    "ppo": (lambda m: m.policy.action_net, 150.0),
    "ddpg": (lambda m: m.policy.actor.mu[-2], 6.0),
    "ppo_lagrangian": (lambda m: m.policy.action_net, 150.0),
    "qrdqn": (lambda m: m.policy.quantile_net.quantile_net[-1], 1.0),
}


@cache
def agents(seed: int = 0) -> dict[str, Any]:
    """The five agents with params.yaml architectures, untrained, their output layers scaled.

    SB3 initialises PPO's action layer with gain 0.01, so its means sit near 0 and the clip to
    the action Box would never act; a gain on the last layer spreads the actions over the Box
    and past it (the clip), and over the tanh's curve, as trained policies are: the paths a
    parity test must cover. Hidden layers keep SB3's initialisation (realistic activations).
    """
    import torch

    from mia.agents import build

    models = {}
    for i, name in enumerate(AGENT_NAMES):
        model = build(name, getattr(params().agents, name), make_env(name), seed=seed + i)
        head, gain = HEADS[name]
        with torch.no_grad():
            head(model).weight.mul_(gain)
        models[name] = model
    return models


@cache
def exported() -> Any:
    from mia.registry.onnx_export import export_policy

    return export_policy(agents())


def write(path: Path, **changes: Any) -> Bundle:
    """A bundle of the five agents (keyword arguments replace write_bundle's)."""
    spec, norm, _, _ = spec_market()
    exp = exported()
    kwargs: dict[str, Any] = {
        "symbol": "ES", "spec": spec, "normalizer": norm, "agents": exp.agents,
        "graph": exp.graph, "ensemble": ENSEMBLE, "hmm": None,
        "drift": {"edges": [[0.0, 1.0]] * 3, "n_bins": 3}, "risk": params().risk,
        "env": params().env, "metrics": {"wf/sharpe": 1.25, "wf/max_drawdown": 0.08},
        "data_hash": "9f2c" * 16, "git_sha": "261f47e", "created_at": CREATED}
    return write_bundle(path, **{**kwargs, **changes})


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundles") / "es"
    write(path)
    return path


@pytest.fixture
def copy(bundle_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the module's bundle, free to damage."""
    import shutil

    return Path(shutil.copytree(bundle_dir, tmp_path / "copy"))


def rewrite(path: Path, edit: Any, *, rehash: bool) -> None:
    doc = json.loads((path / MANIFEST).read_text())
    edit(doc)
    if rehash:
        doc["sha256"] = content_hash(doc)
    (path / MANIFEST).write_text(json.dumps(doc))


# -- write and read --------------------------------------------------------------------------

def test_written_bundle_reads_back_every_block(bundle_dir: Path) -> None:
    spec, norm, _, _ = spec_market()
    b = read_bundle(bundle_dir)
    assert b.symbol == "ES"
    assert b.git_sha == "261f47e"
    assert b.data_hash == "9f2c" * 16
    assert b.created_at == CREATED
    assert b.created_at.utcoffset() == timedelta(0)
    assert b.spec.sha256 == spec.sha256
    assert b.spec.names == spec.names
    np.testing.assert_array_equal(b.normalizer.center, norm.center)
    np.testing.assert_array_equal(b.normalizer.scale, norm.scale)
    assert [a.name for a in b.agents] == list(AGENT_NAMES)
    assert [a.algorithm for a in b.agents] == ["SAC", "PPO", "DDPG", "PPO-Lagrangian", "QR-DQN"]
    assert [a.n_quantiles for a in b.agents] == [None] * 4 + [51]
    assert b.ensemble == ENSEMBLE
    assert b.hmm is None
    assert b.drift["n_bins"] == 3
    assert b.risk["risk"]["max_contracts"] == params().risk.max_contracts
    assert b.risk["env"]["max_contracts"] == b.max_contracts == params().env.max_contracts
    assert b.metrics == {"wf/sharpe": 1.25, "wf/max_drawdown": 0.08}
    assert b.sha256 == content_hash(json.loads((bundle_dir / MANIFEST).read_text()))


def test_bundle_holds_only_its_manifest_and_onnx_graphs(bundle_dir: Path) -> None:
    files = sorted(p.name for p in bundle_dir.iterdir())
    assert files == sorted([MANIFEST, "policy.onnx", *(f"{n}.onnx" for n in AGENT_NAMES)])
    doc = json.loads((bundle_dir / MANIFEST).read_text())
    assert doc["format_version"] == FORMAT_VERSION
    assert doc["feature_spec"]["sha256"] == spec_market()[0].sha256
    assert all(a["onnx"]["file"] == f"{a['name']}.onnx" for a in doc["agents"])


def test_content_hash_ignores_formatting_and_key_order(copy: Path) -> None:
    doc = json.loads((copy / MANIFEST).read_text())
    (copy / MANIFEST).write_text(json.dumps(dict(reversed(list(doc.items())))))  # one line
    assert read_bundle(copy).sha256 == doc["sha256"]


def test_write_refuses_an_existing_bundle_unless_overwrite(bundle_dir: Path,
                                                           tmp_path: Path) -> None:
    with pytest.raises(OperationalError, match="exists; pass overwrite=True"):
        write(bundle_dir)
    path = tmp_path / "b"
    write(path)
    again = write(path, metrics={"wf/sharpe": 2.0}, overwrite=True)
    assert again.metrics == {"wf/sharpe": 2.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temporary directory left


@pytest.mark.parametrize(("changes", "message"), [
    ({"metrics": {"wf/sharpe": float("nan")}}, "metrics"),
    ({"drift": {"edges": [[0.0, float("inf")]]}}, "drift is not JSON"),
    ({"ensemble": {"weights": np.float32(0.4)}}, "ensemble is not JSON"),
    ({"symbol": "CL"}, "symbol 'CL'"),
    ({"created_at": datetime(2024, 3, 1)}, "tz-aware"),  # noqa: DTZ001 - the bad input itself
    ({"git_sha": ""}, "git_sha"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path: Path, changes: dict[str, Any],
                                                         message: str) -> None:
    with pytest.raises(OperationalError, match=message):
        write(tmp_path / "b", **changes)
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_a_normaliser_of_other_features(tmp_path: Path) -> None:
    norm = spec_market()[1]
    other = Normalizer(names=tuple(reversed(norm.names)), center=norm.center, scale=norm.scale)
    with pytest.raises(OperationalError, match="normaliser's feature names"):
        write(tmp_path / "b", normalizer=other)


def test_write_refuses_a_fused_graph_of_other_agents(tmp_path: Path) -> None:
    from mia.registry.onnx_export import export_agent, fuse

    exp = exported()
    retrained = fuse([export_agent("sac", agents(seed=1)["sac"]), *exp.agents[1:]])
    with pytest.raises(OperationalError, match="fused graph's 'sac/action' differs"):
        write(tmp_path / "b", graph=retrained)


def test_hmm_round_trips_and_must_be_the_specs_own(tmp_path: Path) -> None:
    from mia.regime.filter import HMMParams

    def hmm(mean: float) -> HMMParams:
        return HMMParams(labels=("trend", "range", "defensive"),
                         startprob=np.full(3, 1 / 3), transmat=np.full((3, 3), 1 / 3),
                         means=[[mean, 1.0], [0.0, 0.5], [-mean, 2.0]],
                         variances=np.ones((3, 2)))

    spec, norm, _, raw = spec_market()
    regime_spec = make_spec([*spec.names[:-1], "regime_p_trend"], regime=hmm(1.0).to_dict())
    kwargs = {"spec": regime_spec, "normalizer": Normalizer.fit(raw, regime_spec.names,
                                                                slice(0, 100))}
    b = write(tmp_path / "b", hmm=hmm(1.0), **kwargs)
    assert HMMParams.from_dict(b.hmm).to_dict() == hmm(1.0).to_dict()
    assert b.spec.regime == hmm(1.0).to_dict()
    with pytest.raises(OperationalError, match="hmm differs"):
        write(tmp_path / "c", hmm=hmm(2.0), **kwargs)


# -- refusing incomplete or tampered bundles ---------------------------------------------------

def test_flipped_byte_in_an_onnx_file_is_refused(copy: Path) -> None:
    data = bytearray((copy / "ddpg.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "ddpg.onnx").write_bytes(bytes(data))
    with pytest.raises(OperationalError, match=r"'ddpg\.onnx' does not match its recorded sha256"):
        read_bundle(copy)


def test_edited_ensemble_weight_in_the_manifest_is_refused(copy: Path) -> None:
    rewrite(copy, lambda d: d["ensemble"]["weights"].update(sac=0.9), rehash=False)
    with pytest.raises(OperationalError, match="bundle.json was altered after it was written"):
        read_bundle(copy)


def test_deleted_graph_is_refused_as_incomplete(copy: Path) -> None:
    (copy / "qrdqn.onnx").unlink()
    with pytest.raises(OperationalError, match="'qrdqn.onnx' is missing"):
        read_bundle(copy)


def test_deleted_manifest_is_refused(copy: Path) -> None:
    (copy / MANIFEST).unlink()
    with pytest.raises(OperationalError, match="no bundle.json"):
        read_bundle(copy)


def test_unlisted_file_is_refused(copy: Path) -> None:
    (copy / "model.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(OperationalError, match=r"unlisted files \['model.pkl'\]"):
        read_bundle(copy)


def test_unknown_format_version_is_refused(copy: Path) -> None:
    rewrite(copy, lambda d: d.update(format_version=FORMAT_VERSION + 1), rehash=True)
    with pytest.raises(OperationalError, match=f"format version {FORMAT_VERSION + 1} is unknown"):
        read_bundle(copy)


def test_manifest_missing_a_block_is_refused(copy: Path) -> None:
    rewrite(copy, lambda d: d.pop("normalizer"), rehash=True)
    with pytest.raises(OperationalError, match=r"lacks \['normalizer'\]"):
        read_bundle(copy)


def test_truncated_manifest_is_refused(copy: Path) -> None:
    text = (copy / MANIFEST).read_text()
    (copy / MANIFEST).write_text(text[: len(text) // 2])
    with pytest.raises(OperationalError, match="not valid JSON"):
        read_bundle(copy)


def test_spec_the_kernels_cannot_build_is_refused(copy: Path) -> None:
    # a consistently hashed bundle from an MIA whose first feature had other parameters
    def edit(doc: dict[str, Any]) -> None:
        spec = doc["feature_spec"]
        spec["features"][0]["params"] = {"n": 999}
        payload = {k: v for k, v in spec.items() if k != "sha256"}
        # FeatureSpec's own hash: sha256 of its payload as sorted-key JSON (mia.features.spec)
        spec["sha256"] = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    rewrite(copy, edit, rehash=True)
    with pytest.raises(SpecError, match="cannot be built by these kernels"):
        read_bundle(copy)


# -- acting ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sac", "ppo_lagrangian", "qrdqn"])
def test_policy_acts_like_sb3_on_the_env_and_maps_targets_like_the_env(bundle_dir: Path,
                                                                       name: str) -> None:
    raw = spec_market()[3]
    policy = Policy.load(bundle_dir)
    model, env = agents()[name], make_env(name, evaluate=True)
    obs, _ = env.reset(seed=0)
    targets = set()
    for _ in range(60):
        out = policy.act(raw[env.row], env.position)[name]
        want = model.predict(obs, deterministic=True)[0]
        if out.action is None:
            assert out.fraction == pytest.approx(float(want[0]), abs=1e-5)
            action: Any = np.array([out.fraction], dtype=np.float32)
        else:
            assert out.action == int(want)
            assert out.quantiles.shape == (51, 3)
            action = out.action
        obs, _, _, _, info = env.step(action)
        assert info["position"] == out.target
        targets.add(out.target)
    assert len(targets) > 1  # the position slot of the observation changed on the way


def test_act_batch_rows_equal_act_and_fused_equals_per_agent(bundle_dir: Path) -> None:
    raw = spec_market()[3][:40]
    positions = np.tile([-5, -2, 0, 3, 5], 8)
    fused, alone = Policy.load(bundle_dir), Policy.load(bundle_dir, fused=False)
    batch = fused.act_batch(raw, positions)
    other = alone.act_batch(raw, positions)
    for t in range(len(raw)):
        one = fused.act(raw[t], positions[t])
        for name, out in one.items():
            assert batch[name].fraction[t] == pytest.approx(out.fraction, abs=1e-6)
            assert batch[name].target[t] == out.target
            assert other[name].target[t] == out.target
            if out.quantiles is not None:
                np.testing.assert_allclose(batch[name].quantiles[t], out.quantiles, atol=1e-6)
                assert batch[name].action[t] == out.action
    assert {int(v) for v in batch["qrdqn"].action} == {0, 1, 2}


def test_act_returns_quantiles_that_later_calls_do_not_overwrite(bundle_dir: Path) -> None:
    raw = spec_market()[3]
    policy = Policy.load(bundle_dir)
    first = policy.act(raw[0], 0)["qrdqn"].quantiles.copy()
    kept = policy.act(raw[0], 0)["qrdqn"].quantiles
    policy.act(raw[1], 5)
    np.testing.assert_array_equal(kept, first)


@pytest.mark.parametrize(("row", "position", "message"), [
    (np.full(12, np.nan), 0, "non-finite"),
    (np.zeros(11), 0, "features"),
    (np.zeros(12), 6, "outside the limit"),
])
def test_act_refuses_bad_rows_and_positions(bundle_dir: Path, row: np.ndarray, position: int,
                                            message: str) -> None:
    with pytest.raises(OperationalError, match=message):
        Policy.load(bundle_dir).act(row, position)


def test_act_batch_names_the_first_bad_row(bundle_dir: Path) -> None:
    raw = spec_market()[3][:5].copy()
    raw[3, 2] = np.inf
    with pytest.raises(OperationalError, match="at row 3"):
        Policy.load(bundle_dir).act_batch(raw, np.zeros(5))


def test_reading_and_acting_imports_no_torch_sb3_and_opens_no_pickle(bundle_dir: Path) -> None:
    code = f"""
import json, os, pickle, sys
NUMBA_CACHE = os.path.join("numba", "core", "caching.py")  # our own compiled kernels' index
def guard(real):
    def refuse(*args, **kwargs):
        if sys._getframe(1).f_code.co_filename.endswith(NUMBA_CACHE):
            return real(*args, **kwargs)
        raise RuntimeError("pickle used on the bundle read path")
    return refuse
pickle.load, pickle.loads, pickle.Unpickler = (guard(pickle.load), guard(pickle.loads),
                                               guard(pickle.Unpickler))
opened = []
sys.addaudithook(lambda event, args: opened.append(os.fsdecode(args[0]))
                 if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)) else None)
from mia.registry.policy import Policy
import numpy as np
out = Policy.load({str(bundle_dir)!r}).act(np.zeros(12), 0)
heavy = ["torch", "stable_baselines3", "sb3_contrib", "mlflow", "gymnasium", "sklearn",
         "pandas", "onnx"]
print(json.dumps({{
    "agents": list(out),
    "heavy": [m for m in heavy if m in sys.modules],
    "pickled": [f for f in opened if f.endswith((".pkl", ".pickle", ".pt", ".pth", ".zip"))
                and f not in sys.path],  # the stdlib's own zip entry of sys.path is no bundle
    "bundle": sorted({{os.path.basename(f) for f in opened
                      if f.startswith({str(bundle_dir)!r} + os.sep)}}),
}}))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, cwd=REPO)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["agents"] == list(AGENT_NAMES)
    assert seen["heavy"] == []
    assert seen["pickled"] == []
    assert seen["bundle"] == sorted([MANIFEST, "policy.onnx", *(f"{n}.onnx" for n in AGENT_NAMES)])


def test_created_at_is_stored_in_utc(bundle_dir: Path) -> None:
    doc = json.loads((bundle_dir / MANIFEST).read_text())
    assert doc["created_at"] == CREATED.astimezone(UTC).isoformat() == "2024-03-02T03:05:00+00:00"

