"""Issue 8 item 2: wipe local state -> `mia restore` -> the executor resumes with identical
positions and PnL. The executor's state is written by its own code (journal, paper broker,
snapshots, a risk engine), backed up with `mia backup` to a real S3 server (moto's), and
recovered with executor.recovery after the restore; `mia restore` refuses what it must."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from executor.app import open_state
from executor.broker import Order, client_id
from executor.journal import Journal, to_ns
from executor.state import bar_entry, order_entry
from mia.cli import main
from mia.config import load_config
from mia.risk import RiskEngine
from mia.types import Bar
from tests.unit.risk._rules import rules

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 1, 2, 15, 0, tzinfo=UTC)
MULT = {"ES": 50.0}


@pytest.fixture(scope="module")
def s3_endpoint():
    moto_server = pytest.importorskip(
        "moto.server", reason="moto is not installed (not in requirements.lock): the S3 "
                              "round trip runs where `pip install moto[server]` was done")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def env(s3_endpoint, tmp_path, monkeypatch):
    """`mia …` in this process against a fresh bucket `mia-backups` (params.yaml backup.bucket)."""
    import boto3

    home = tmp_path / "home"
    for key, value in {"MIA_HOME": str(home), "MIA_PARAMS": str(REPO / "params.yaml"),
                       "MLFLOW_TRACKING_URI": f"sqlite:///{home}/mlflow.db",
                       "AWS_ENDPOINT_URL": s3_endpoint, "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="mia-backups")
    yield home, s3
    for obj in s3.list_objects_v2(Bucket="mia-backups").get("Contents", []):
        s3.delete_object(Bucket="mia-backups", Key=obj["Key"])
    s3.delete_bucket(Bucket="mia-backups")


@pytest.fixture
def mia(capsys):
    def call(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse refuses a bad argument before the command runs
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


def bar(i: int, price: float) -> Bar:
    return Bar(T0 + timedelta(minutes=i), "ES", price, price + 2, price - 2, price + 1, 100.0,
               None)


def trade_and_stop(home: Path) -> dict:
    """The executor's loop by hand: orders journaled then sent, fills polled and booked, bars
    journaled, a snapshot with a risk engine mid-way, records after it; then the process stops
    with production long 1 (a partial close booked PnL), canary short, and an order working.

    :return: the state it had when it stopped, and the broker's positions.
    """
    params = load_config(REPO / "params.yaml", env={"MIA_HOME": str(home)}).params
    opened = open_state(home / "executor", ["ES"], params)
    j, broker, live = opened.journal, opened.broker, opened.recovered.state
    engine = RiskEngine(rules("ES"), equity=237_500.0, trade_date=date(2024, 1, 2),
                        now_ns=to_ns(T0))

    def send(i: int, book: str, q: int) -> None:
        o = Order(client_id("ES", to_ns(bar(i, 0).ts), book, 0), "ES", q, book, "policy",
                  to_ns(bar(i, 0).ts))
        live.commit(j, order_entry(o))
        broker.submit(o)

    def step(i: int, price: float) -> None:
        broker.on_bar(bar(i, price))
        for f in broker.poll_fills():
            live.commit_fill(j, f)
        live.commit(j, bar_entry("ES", to_ns(bar(i, price).ts), f"ES:{i}"))

    send(0, "production", 2)
    send(0, "canary", -1)
    step(1, 4800.0)
    send(1, "production", -1)
    step(2, 4812.0)  # production sells 1 of 2 at a 12-point gain
    engine.on_equity(now_ns=to_ns(bar(2, 0).ts), trade_date=date(2024, 1, 2), equity=237_900.0)
    opened.snapshots.write(live.snapshot(j, taken_ns=to_ns(bar(2, 0).ts),
                                         engines={"production/ES": engine}))
    send(2, "canary", -1)
    step(3, 4805.0)
    send(3, "production", 1)  # sent, still working when the process stops
    stopped = {"state": live.to_dict(), "positions": broker.positions(),
               "working": [o.client_id for o in broker.working()]}
    broker.close()
    j.close()
    return stopped


def recovered(home: Path) -> tuple[dict, object]:
    params = load_config(REPO / "params.yaml", env={"MIA_HOME": str(home)}).params
    opened = open_state(home / "executor", ["ES"], params)
    try:
        rec = opened.recovered
        return {"state": rec.state.to_dict(), "positions": opened.broker.positions(),
                "working": [o.client_id for o in opened.broker.working()]}, rec
    finally:
        opened.broker.close()
        opened.journal.close()


def test_wipe_then_mia_restore_resumes_the_executor_with_identical_positions_and_pnl(env, mia):
    home, s3 = env
    stopped = trade_and_stop(home)
    books = {b: (q, cash) for b, s, q, cash in stopped["state"]["books"]}
    assert books["production"][0] == 1
    assert books["canary"][0] == -2
    assert books["production"][1] != 0  # PnL booked
    assert stopped["working"]

    code, out, err = mia("backup")
    assert code == 0, err
    assert "skipped mlflow_db" in out  # no MLflow database in this home yet
    shutil.rmtree(home / "executor")  # the machine is lost

    code, out, err = mia("restore")
    assert code == 0, err
    assert "executor" in out
    assert "[local: empty]" in out
    assert "restored " in out
    restored = home / "executor"
    folders = [restored, *(p for p in restored.rglob("*") if p.is_dir())]
    assert {oct(f.stat().st_mode & 0o777) for f in folders} == {"0o700"}  # the owner's only
    files = [p for p in restored.rglob("*") if p.is_file()]
    assert files
    assert {oct(f.stat().st_mode & 0o777) for f in files} == {"0o600"}  # as the executor made them
    state, rec = recovered(home)
    assert state == stopped  # books (positions, cash), open orders, risk state, working orders
    assert rec.loaded.path is not None  # resumed from the snapshot, then the journal after it
    assert rec.replayed > 0
    assert rec.mismatches == ()
    assert rec.resubmitted == ()
    track = rec.state.restore_engines({"ES": rules("ES")})["production/ES"].track
    assert track.last == 237_900.0


def test_restore_refuses_over_differing_state_and_force_moves_it_aside(env, mia):
    home, _ = env
    trade_and_stop(home)
    assert mia("backup")[0] == 0
    code, out, _ = mia("restore")
    assert code == 0
    assert "nothing to restore: local state already is backup" in out
    with Journal(home / "executor" / "journal.sqlite") as j:  # the executor traded on
        j.append("alert", {"level": "info", "code": "later", "message": "after the backup"})
    newer = (home / "executor" / "journal.sqlite").read_bytes()

    code, out, err = mia("restore", "--what", "executor")
    assert code == 2
    assert "differ from the backup" in out  # it says what it would restore, and over what
    assert "--force" in err
    assert (home / "executor" / "journal.sqlite").read_bytes() == newer  # nothing touched

    code, out, err = mia("restore", "--what", "executor", "--force")
    assert code == 0, err
    (aside,) = [p for p in home.iterdir() if p.name.startswith("executor.before-restore-")]
    assert f"moved aside: {aside}" in out
    assert (aside / "journal.sqlite").read_bytes() == newer
    with Journal(home / "executor" / "journal.sqlite", readonly=True) as j:
        assert j.count("alert") == 0  # the backup's journal, without the later record


def test_restore_is_refused_while_an_executor_writes_the_state(env, mia):
    home, _ = env
    trade_and_stop(home)
    assert mia("backup")[0] == 0
    with Journal(home / "executor" / "journal.sqlite") as j:  # an executor runs and trades on
        j.append("alert", {"level": "info", "code": "later", "message": "after the backup"})
        for force in (["--force"], []):  # said first, with or without --force
            code, out, err = mia("restore", *force)
            assert code == 2
            assert "is writing" in err
            assert "stop it first" in err
            assert out == ""  # no plan: nothing but the refusal
        assert j.count("alert") == 1  # its state was neither moved nor replaced
    assert not [p for p in home.iterdir() if ".before-restore-" in p.name]


def test_restore_at_a_time_before_every_backup_says_which_is_the_oldest(env, mia):
    home, _ = env
    trade_and_stop(home)
    assert mia("backup")[0] == 0
    code, _, err = mia("restore", "--at", "2020-01-01")
    assert code == 2
    assert "no backup at or before 2020-01-01T23:59:59.999999+00:00" in err
    assert "the oldest is" in err
    code, _, err = mia("restore", "--at", "2020-01-01T10:00")
    assert code == 2
    assert "no zone" in err
    code, _, err = mia("restore", "--what", "journal")
    assert code == 2
    assert "use a comma list of mlflow, executor, data" in err


def test_backup_dry_run_says_what_it_would_upload_and_writes_nothing(env, mia):
    home, s3 = env
    trade_and_stop(home)
    code, out, err = mia("backup", "--dry-run")
    assert code == 0, err
    assert "dry run: nothing is uploaded or deleted" in out
    assert "would upload" in out
    assert s3.list_objects_v2(Bucket="mia-backups").get("KeyCount") == 0
    assert mia("restore")[0] == 2  # there is no backup to restore
