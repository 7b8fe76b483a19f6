"""The dependency audit (tools/audit_deps.py) on sample PyPI documents: no network."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tools import audit_deps as ad

ADVISORY = {"id": "GHSA-aaaa", "aliases": ["PYSEC-1", "CVE-1"], "fixed_in": [], "summary": "s",
            "details": "d", "withdrawn": None}


def _fetcher(docs: dict[str, dict[str, Any] | None], unreachable: bool = False) -> ad.Fetch:
    def fetch(url: str) -> dict[str, Any] | None:
        if unreachable:
            raise OSError("connection refused")
        return docs.get(url.removeprefix(ad.PYPI + "/"))
    return fetch


def _project(version: str, vulns: list[dict[str, Any]]) -> dict[str, Any]:
    return {"info": {"version": version}, "vulnerabilities": vulns}


def _lock(tmp_path, *pins: str):
    path = tmp_path / "requirements.lock"
    path.write_text("# comment\n\n" + "\n".join(pins) + "\n")
    return path


def _ignore(tmp_path, text: str):
    path = tmp_path / "ignore.yaml"
    path.write_text(text)
    return path


ENTRY = """- id: PYSEC-1
  package: Disk_Cache
  version: "1.0"
  reason: reviewed
"""


def test_a_release_document_audits_the_exact_pin_even_when_not_latest():
    fetch = _fetcher({"a/1.0/json": {"vulnerabilities": [ADVISORY]}})
    result = ad.audit_pin("a", "1.0", fetch)
    assert result.status == "vulnerable"
    assert result.source == "release"
    assert [a.id for a in result.advisories] == ["GHSA-aaaa"]


def test_the_project_document_audits_only_a_pin_that_is_the_latest_release():
    fetch = _fetcher({"a/json": _project("2.0", [ADVISORY])})
    latest = ad.audit_pin("a", "2.0", fetch)
    older = ad.audit_pin("a", "1.0", fetch)
    assert latest.status == "vulnerable"
    assert latest.source.startswith("project")
    assert older.status == "unaudited"  # never called clean: 2.0's advisories say nothing of 1.0
    assert "not the latest release (2.0)" in older.reason
    assert older.advisories == []


def test_a_withdrawn_advisory_does_not_count():
    fetch = _fetcher({"a/json": _project("2.0", [{**ADVISORY, "withdrawn": "2026-01-01"}])})
    assert ad.audit_pin("a", "2.0", fetch).status == "clean"


def test_an_unknown_project_is_unaudited_with_the_reason():
    result = ad.audit_pin("private-pkg", "1.0", _fetcher({}))
    assert result.status == "unaudited"
    assert "no such project" in result.reason


def test_an_accepted_advisory_matches_by_alias_and_normalised_name(tmp_path):
    fetch = _fetcher({"disk-cache/json": _project("1.0", [ADVISORY])})
    report = ad.run(_lock(tmp_path, "disk-cache==1.0"), _ignore(tmp_path, ENTRY), fetch)
    assert report.pins[0].status == "ignored"
    assert report.pins[0].ignored == ["GHSA-aaaa"]
    assert not report.failed


def test_an_unaccepted_advisory_fails_the_audit(tmp_path):
    fetch = _fetcher({"disk-cache/json": _project("1.0", [ADVISORY, {**ADVISORY, "id": "X-2",
                                                                      "aliases": []}])})
    report = ad.run(_lock(tmp_path, "disk-cache==1.0"), _ignore(tmp_path, ENTRY), fetch)
    assert report.pins[0].status == "vulnerable"  # one of two accepted is not enough
    assert report.failed
    assert "VULNERABLE: disk-cache==1.0 X-2" in ad.summary(report)


@pytest.mark.parametrize(("docs", "lock_pin", "why"), [
    ({"disk-cache/json": _project("1.1", [])}, "disk-cache==1.1", "no longer pinned (now 1.1)"),
    ({"disk-cache/json": _project("1.0", [])}, "disk-cache==1.0", "no such advisory"),
    ({"disk-cache/json": _project("1.0", [{**ADVISORY, "fixed_in": ["1.1"]}])},
     "disk-cache==1.0", "has a fixed release (1.1)"),
])
def test_an_ignore_entry_that_no_longer_holds_is_stale_and_fails(tmp_path, docs, lock_pin, why):
    report = ad.run(_lock(tmp_path, lock_pin), _ignore(tmp_path, ENTRY), _fetcher(docs))
    assert report.failed
    assert len(report.stale) == 1
    assert why in report.stale[0]


def test_main_exit_codes(tmp_path, capsys):
    lock = _lock(tmp_path, "a==2.0", "b==1.0")
    docs = {"a/json": _project("2.0", []), "b/json": _project("3.0", [])}
    args = ["--lock", str(lock), "--ignore", str(tmp_path / "none.yaml"),
            "--json", str(tmp_path / "out" / "audit.json")]
    assert ad.main(args, _fetcher(docs)) == 0  # b is unaudited: listed, not failed
    assert "1 clean, 0 vulnerable, 0 accepted (tools/audit-ignore.yaml), 1 unaudited" in \
        capsys.readouterr().out
    written = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert [p["status"] for p in written["pins"]] == ["clean", "unaudited"]
    assert ad.main([*args, "--strict"], _fetcher(docs)) == 1
    assert ad.main(args, _fetcher({}, unreachable=True)) == 3
    assert "PyPI is unreachable" in capsys.readouterr().err


@pytest.mark.parametrize(("lock", "ignore", "message"), [
    ("numpy>=2\n", "", "is not an exact pin"),
    ("# only comments\n", "", "no pins"),
    ("a==1\n", "- id: X\n  package: a\n  version: '1'\n", "must have exactly the keys"),
    ("a==1\n", "- id: X\n  package: a\n  version: '1'\n  reason: ' '\n", "has an empty field"),
    ("a==1\n", "id: X\n", "expected a list"),
])
def test_bad_input_is_refused_with_where_and_how(tmp_path, lock, ignore, message, capsys):
    (tmp_path / "l").write_text(lock)
    (tmp_path / "i").write_text(ignore)
    assert ad.main(["--lock", str(tmp_path / "l"), "--ignore", str(tmp_path / "i")],
                   _fetcher({})) == 2
    assert message in capsys.readouterr().err


def test_the_project_ignore_file_is_well_formed():
    entries = ad.read_ignores(ad.REPO / "tools" / "audit-ignore.yaml")
    pins = dict(ad.read_lock(ad.REPO / "requirements.lock"))
    assert entries
    assert all(pins.get(e.package) == e.version for e in entries)  # each names a current pin
