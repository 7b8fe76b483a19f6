"""The demo replay's window and books (mia.commands.demo_replay)."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import pytest

from mia.commands.demo_replay import Window, choose_books, held_out_dates, replay_command
from mia.config import load_config
from mia.errors import OperationalError

D1, D2, D3 = date(2024, 1, 24), date(2024, 1, 25), date(2024, 1, 26)


def test_the_window_is_the_dates_wholly_inside_the_holdout():
    days = [D1] * 4 + [D2] * 4 + [D3] * 4
    assert held_out_dates(days, 8) == ([D2, D3], True)
    assert held_out_dates(days, 7) == ([D3], True)  # D2 starts before the holdout
    assert held_out_dates(days, 100) == ([D1, D2, D3], True)


def test_a_holdout_shorter_than_a_session_replays_the_last_session_and_says_so():
    assert held_out_dates([D1] * 4 + [D2] * 4, 3) == ([D2], False)


def test_no_bars_is_an_error():
    with pytest.raises(OperationalError, match="no bars"):
        held_out_dates([], 10)


def test_a_fresh_install_replays_the_canary_on_the_whole_book():
    books = choose_books(production=None, canary="1", share=0.05, candidate="1",
                         default_share=0.05)
    assert (books.production, books.canary, books.share) == ("1", None, 0.0)
    assert "no production version yet" in books.why


def test_with_production_the_canary_trades_beside_it_at_its_share():
    books = choose_books(production="1", canary="2", share=0.15, candidate="2",
                         default_share=0.05)
    assert (books.production, books.canary, books.share) == ("1", "2", 0.15)


def test_a_canary_without_its_share_tag_gets_the_configured_share():
    books = choose_books(production="1", canary="2", share=math.nan, candidate="2",
                         default_share=0.05)
    assert books.share == 0.05


def test_a_canary_at_the_whole_share_trades_alone():
    books = choose_books(production="1", canary="2", share=1.0, candidate="2", default_share=0.05)
    assert (books.production, books.canary) == ("2", None)


def test_a_rejection_keeps_production_alone_or_replays_the_candidate_for_inspection():
    kept = choose_books(production="1", canary=None, share=math.nan, candidate="2",
                        default_share=0.05)
    assert (kept.production, kept.canary) == ("1", None)
    alone = choose_books(production=None, canary=None, share=math.nan, candidate="2",
                         default_share=0.05)
    assert alone.production == "2"
    assert "rejected candidate v2" in alone.why


def test_the_command_is_the_executors_replay_with_canary_and_cross(tmp_path):
    import executor.__main__ as cli  # the flags must be the executor's own

    cfg = load_config(None, env={"MIA_HOME": str(tmp_path / "home")})
    w = Window(start=D2, end=D3, first_ts=None, last_ts=None, whole=True)  # type: ignore[arg-type]
    cmd = replay_command(cfg, "ES", "MNQ", w, Path("/b/prod"), Path("/b/can"), 0.05, tmp_path)
    assert cmd[1:4] == ["-m", "executor", "--replay"]
    args = cli._parser().parse_args(cmd[3:])
    assert (args.bundle, args.canary, args.canary_share) == (Path("/b/prod"), Path("/b/can"), 0.05)
    assert (args.symbol, args.cross, args.start, args.end) == ("ES", "MNQ", D2, D3)
    assert args.home == tmp_path / "home"
    assert args.state == tmp_path / "state"
    assert args.out == tmp_path / "decisions.csv"
    alone = cli._parser().parse_args(
        replay_command(cfg, "ES", None, w, Path("/b/prod"), None, 0.0, tmp_path)[3:])
    assert (alone.canary, alone.cross) == (None, None)
