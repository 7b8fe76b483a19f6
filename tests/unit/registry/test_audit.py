import json
from datetime import datetime, timedelta, timezone

import pytest

from mia.clock import TestClock
from mia.errors import OperationalError
from mia.registry import audit
from mia.registry.audit import AuditEntry, Plan, Write


def entry(i: int, changes=("+canary",), reason="why") -> AuditEntry:
    return AuditEntry(id=f"id{i}", at="2025-01-06T21:00:00Z", by="alice", action="set_canary",
                      changes=tuple(changes), reason=reason)


def test_who_prefers_the_explicit_user_then_mia_user_then_the_login():
    assert audit.who("bob", env={"MIA_USER": "carol"}) == "bob"
    assert audit.who(None, env={"MIA_USER": "carol"}) == "carol"
    assert audit.who(None, env={}) != ""  # getpass: LOGNAME / USER / passwd entry


def test_who_without_any_name_is_refused(monkeypatch):
    for var in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(audit.getpass, "getuser", lambda: (_ for _ in ()).throw(OSError()))
    with pytest.raises(OperationalError, match="set MIA_USER or pass --user"):
        audit.who(None, env={})


def test_stamp_is_utc_iso_with_z_from_the_injected_clock():
    clock = TestClock(datetime(2025, 1, 6, 16, 0, 0, tzinfo=timezone(timedelta(hours=-5))))
    assert audit.stamp(clock) == "2025-01-06T21:00:00Z"
    clock.advance(61.7)
    assert audit.stamp(clock) == "2025-01-06T21:01:01Z"


def test_reason_is_required_normalised_and_bounded():
    assert audit.check_reason("  canary held\n two weeks ") == "canary held two weeks"
    with pytest.raises(OperationalError, match="a reason is required"):
        audit.check_reason("   ")
    with pytest.raises(OperationalError, match="keep it under 500"):
        audit.check_reason("x" * 501)


@pytest.mark.parametrize("share", [0.0, -0.1, 1.01, float("nan"), float("inf")])
def test_share_outside_zero_one_is_refused_and_names_the_schedule(share):
    with pytest.raises(OperationalError, match=r"must be in \(0, 1\] \(the schedule is 0.05, 0.15"):
        audit.check_share(share, (0.05, 0.15, 0.5, 1.0))


def test_appending_the_same_move_twice_records_it_once():
    first = audit.appended([], entry(1))
    assert first is not None
    entries = audit.history({audit.TAG_HISTORY: first}, "mia-ES v1")
    assert entries == [entry(1)]
    assert audit.appended(entries, entry(1)) is None


def test_history_keeps_the_newest_entries_within_count_and_tag_size():
    entries = [entry(i) for i in range(audit.MAX_ENTRIES)]
    text = audit.appended(entries, entry(999))
    assert text is not None
    kept = json.loads(text)
    assert len(kept) == audit.MAX_ENTRIES
    assert (kept[0]["id"], kept[-1]["id"]) == ("id1", "id999")
    long = [entry(i, reason="r" * 480) for i in range(20)]
    text = audit.appended(long, entry(20, reason="r" * 480))
    assert text is not None
    assert len(text) <= audit.MAX_TAG_CHARS
    assert json.loads(text)[-1]["id"] == "id20"


def test_an_edited_history_tag_is_refused_loudly():
    with pytest.raises(OperationalError, match="mia-ES v3: tag audit/history is not an audit"):
        audit.history({audit.TAG_HISTORY: "[{\"oops\": 1}]"}, "mia-ES v3")


def test_alias_entry_is_the_gain_unless_a_later_mia_entry_took_the_alias_away():
    gained, lost = entry(1, ("+production",)), entry(2, ("-production", "+previous-production"))
    assert audit.alias_entry([gained], "production") == gained
    assert audit.alias_entry([gained, lost], "production") is None  # back by hand since
    assert audit.alias_entry([gained, lost], "previous-production") == lost
    assert audit.alias_entry([], "canary") is None


def test_a_plan_survives_its_json_tag_and_a_broken_one_says_how_to_recover():
    plan = Plan(id="abc", action="promote", request={}, at="2025-01-06T21:00:00Z", by="alice",
                reason="why", writes=(Write(op="set_alias", version="3", alias="production"),),
                changes={"3": ("-canary", "+production")},
                after={"production": "3", "canary": None, "previous-production": "2"},
                message="promoted v3")
    assert Plan.from_json(plan.to_json(), "mia-ES") == plan
    assert plan.entry("3").line() == ("2025-01-06T21:00:00Z alice promote -canary +production: "
                                      "why")
    with pytest.raises(OperationalError, match="delete the tag in the MLflow UI"):
        Plan.from_json("{}", "mia-ES")

