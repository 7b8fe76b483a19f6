"""The daily canary review end to end: a real MLflow registry (SQLite), a journal written by the
executor's code, the moves made by mia.registry.aliases and audited; reruns move nothing twice."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from executor.broker import Fill, Order, client_id
from executor.journal import Journal, to_ns
from executor.state import LiveState, bar_entry, order_entry
from mia.clock import TestClock
from mia.config import load_config
from mia.errors import TemporaryError
from mia.pipelines import canary_review
from mia.registry import aliases, audit
from tests.integration.test_cli_registry import mlflow_uri_restored, registered

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MONDAY_CLOSE = datetime(2024, 1, 8, 22, 0, tzinfo=UTC)  # 17:00 ET in winter
DAY = timedelta(days=1)
SETTLE = timedelta(minutes=30)  # the DAG runs 30 min after the close; so do the moves here


def close(day: int) -> datetime:
    """:return: the 17:00 ET close of January ``day``, 2024."""
    return datetime(2024, 1, day, 22, 0, tzinfo=UTC)


@pytest.fixture
def world(tmp_path, monkeypatch):
    """mia-ES v1 in production, v2 registered; rules scaled to a few bars: 2 days a step, 2
    trades; a journal the tests fill through the executor's LiveState."""
    monkeypatch.setenv("MIA_USER", "ops")
    home = tmp_path / "home"
    with mlflow_uri_restored():
        client = registered(home, 2)
        cfg = load_config(REPO / "params.yaml", env={"MIA_HOME": str(home)})
        p = cfg.params
        cfg = dataclasses.replace(cfg, params=dataclasses.replace(
            p, canary_review=dataclasses.replace(p.canary_review, step_days=2, promote_days=2,
                                                 min_trades=2)))
        clock = TestClock(MONDAY_CLOSE - DAY)
        aliases.set_canary(cfg, "ES", "1", reason="first model", client=client, clock=clock)
        aliases.promote(cfg, "ES", reason="first production", client=client, clock=clock)
        j = Journal(home / "executor" / "journal.sqlite")
        yield World(cfg=cfg, client=client, clock=clock, journal=j, state=LiveState({"ES": 50.0}),
                    out=tmp_path / "runs")
        j.close()


@dataclasses.dataclass
class World:
    cfg: object
    client: object
    clock: TestClock
    journal: Journal
    state: LiveState
    out: Path
    n: int = 0

    def session(self, day: int, canary_points: float, production_points: float = 1.0) -> None:
        """Two round trips per book in January ``day``'s session, each earning ``points``."""
        start = datetime(2024, 1, day, 15, 0, tzinfo=UTC)
        for i in range(4):
            ts = start + timedelta(minutes=i)
            self.state.commit(self.journal, bar_entry("ES", to_ns(ts), f"ES:{to_ns(ts)}"))
            for book, points in (("canary", canary_points), ("production", production_points)):
                q = 1 if i % 2 == 0 else -1
                self._fill(book, q, 4800.0 + (points if q < 0 else 0.0), ts)

    def _fill(self, book: str, q: int, price: float, ts) -> None:
        self.n += 1
        o = Order(client_id("ES", to_ns(ts), book, self.n), "ES", q, book, "policy", to_ns(ts))
        self.state.commit(self.journal, order_entry(o))
        self.state.commit_fill(self.journal, Fill(f"f{self.n}", o.client_id, "ES", q, price,
                                                  2.25, to_ns(ts)))

    def review(self, day: int, client: object = None):
        """Run the review of January ``day`` at its close, the moves stamped 30 min later."""
        self.clock = TestClock(close(day) + SETTLE)
        key = f"2024-01-{day:02d}"
        return canary_review.run(self.cfg, day=key, as_of=close(day), out_dir=self.out / key,
                                 symbols=["ES"], client=client or self.client, clock=self.clock)

    def aliases(self) -> dict[str, str | None]:
        rm = self.client.get_registered_model("mia-ES")
        return {a: None if rm.aliases.get(a) is None else str(rm.aliases[a]) for a in audit.ALIASES}

    def tags(self, version: str) -> dict[str, str]:
        return dict(self.client.get_model_version("mia-ES", version).tags)


def canary_at(w: World, share: float) -> None:
    """v2 becomes the canary at ``share`` right after Monday's close."""
    aliases.set_canary(w.cfg, "ES", "2", share=share, reason="gate passed", client=w.client,
                       clock=TestClock(MONDAY_CLOSE + SETTLE))


def test_a_healthy_canary_holds_then_steps_up_once_per_day_audited_by_the_review(world):
    canary_at(world, 0.05)
    world.session(9, canary_points=2.0)
    first = world.review(9).symbols["ES"]
    assert (first.action, first.moved) == ("hold", False)
    assert "1/2 trade days at share 0.05" in first.reasons
    assert world.tags("2")[audit.TAG_SHARE] == "0.05"
    report = json.loads(first.report.read_text())
    assert report["evidence"]["canary"]["trades"] == 2
    assert report["trade_dates"] == ["2024-01-09"]

    world.session(10, canary_points=2.0)
    step = world.review(10).symbols["ES"]
    assert (step.action, step.moved) == ("step", True)
    tags = world.tags("2")
    assert tags[audit.TAG_SHARE] == "0.15"
    assert tags[audit.TAG_LAST].startswith(
        "2024-01-10T22:30:00Z mia_canary_review set_share share 0.05 -> 0.15: canary review "
        "2024-01-10: 2 trade days and 4 trades at share 0.05")
    history = tags[audit.TAG_HISTORY]

    again = world.review(10).symbols["ES"]  # the same day, rerun: nothing moves twice
    assert (again.action, again.moved) == ("step", False)
    assert "already reviewed 2024-01-10" in again.message
    assert world.tags("2")[audit.TAG_SHARE] == "0.15"
    assert world.tags("2")[audit.TAG_HISTORY] == history

    # the next step starts with the move: the day before it does not count towards it
    world.session(11, canary_points=2.0)
    assert world.review(11).symbols["ES"].reasons[0] == "1/2 trade days at share 0.15"


def test_an_underperforming_canary_is_rolled_back_with_the_reason_once(world):
    canary_at(world, 0.05)
    world.session(9, canary_points=-30.0)  # -3000 USD on a 12,500 USD book, production gains
    result = world.review(9)
    rolled = result.symbols["ES"]
    assert (rolled.action, rolled.moved) == ("rollback", True)
    assert result.rollbacks == ("ES",)
    assert world.aliases() == {"production": "1", "canary": None, "previous-production": None}
    tags = world.tags("2")
    assert audit.TAG_SHARE not in tags
    last = tags[audit.TAG_LAST]
    assert "mia_canary_review clear_canary -canary: canary review 2024-01-09: " in last
    assert "canary drawdown" in last
    assert "trails production's" in last
    assert rolled.to_xcom()["alert"].startswith("ALERT canary rollback mia-ES v2: ")
    again = world.review(9).symbols["ES"]
    assert (again.action, again.moved) == ("rollback", False)
    assert world.tags("2")[audit.TAG_HISTORY] == tags[audit.TAG_HISTORY]


def test_the_last_step_is_promoted_after_its_observation_period_as_the_cli_does(world):
    canary_at(world, 1.0)
    world.session(9, canary_points=2.0, production_points=0.0)
    assert world.review(9).symbols["ES"].action == "hold"
    world.session(10, canary_points=2.0, production_points=0.0)
    promoted = world.review(10).symbols["ES"]
    assert (promoted.action, promoted.moved) == ("promote", True)
    assert world.aliases() == {"production": "2", "canary": None, "previous-production": "1"}
    assert "promote -canary +production: canary review 2024-01-10" in world.tags("2")[
        audit.TAG_LAST]
    assert "-production +previous-production" in world.tags("1")[audit.TAG_LAST]
    again = world.review(10).symbols["ES"]
    assert (again.action, again.moved) == ("promote", False)
    assert world.aliases()["production"] == "2"


class FailingOnce:
    """An MlflowClient whose first alias delete fails as a dead server would."""

    def __init__(self, client: object) -> None:
        self._client, self.failed = client, False

    def delete_registered_model_alias(self, *args: object) -> None:
        from mlflow.exceptions import MlflowException

        if not self.failed:
            self.failed = True
            raise MlflowException("API request to /aliases failed with exception timed out")
        self._client.delete_registered_model_alias(*args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)


def test_a_rollback_interrupted_by_mlflow_is_finished_by_the_rerun_with_one_audit_entry(world):
    canary_at(world, 0.05)
    world.session(9, canary_points=-30.0)
    with pytest.raises(TemporaryError, match="pending"):
        world.review(9, client=FailingOnce(world.client))
    assert world.aliases()["canary"] == "2"  # nothing half-moved: the plan is pending
    finished = world.review(9).symbols["ES"]
    assert (finished.action, finished.moved) == ("rollback", True)
    assert "finished the interrupted clear_canary" in finished.message
    assert world.aliases()["canary"] is None
    entries = audit.history(world.tags("2"), "v2")
    assert [e.action for e in entries].count("clear_canary") == 1


def test_no_canary_and_a_review_before_the_step_began_move_nothing(world):
    assert world.review(9).symbols["ES"].action == "none"
    canary_at(world, 0.05)
    early = canary_review.run(world.cfg, day="2024-01-05", as_of=close(5),
                              out_dir=world.out / "old", symbols=["ES"],
                              client=world.client).symbols["ES"]
    assert (early.action, early.moved) == ("hold", False)
    assert "after this review's instant" in early.reasons[0]
