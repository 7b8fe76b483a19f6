"""Audit the pins of ``requirements.lock`` against PyPI's vulnerability data (what pip-audit reads).

``python -m tools.audit_deps`` (``make audit``; CI runs it through
``tests/integration/test_audit_deps.py``). For each pin ``name==version`` it asks PyPI:

1. the release's JSON (``/pypi/<name>/<version>/json``): its ``vulnerabilities`` are the OSV
   advisories that affect that release: the pin is audited;
2. where a mirror or proxy serves only the project's JSON (``/pypi/<name>/json``, as on the
   build machines of this project), its ``vulnerabilities`` are those of the latest release, so
   they audit the pin only when the pin *is* the latest release. An older pin is reported as
   **unaudited**, with the reason, never as clean.

Accepted advisories live in ``tools/audit-ignore.yaml``, each with the package, the exact pinned
version, the advisory id and why it is accepted. An entry cannot go stale: the audit fails when it
matches no finding (the pin moved, the advisory was withdrawn) or when the advisory has a fixed
release (upgrade instead).

Exit status: 0 clean (unaudited pins are listed; ``--strict`` fails on them), 1 a vulnerability
or a stale ignore entry, 2 bad input (lock or ignore file), 3 PyPI unreachable.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

REPO: Final[Path] = Path(__file__).resolve().parents[1]
PYPI: Final[str] = "https://pypi.org/pypi"
_PIN: Final[re.Pattern[str]] = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)\s*$")

# a document fetcher: the parsed JSON, or None for a 404; raises OSError when unreachable
Fetch = Callable[[str], dict[str, Any] | None]


class AuditInputError(ValueError):
    """The lock or the ignore file is malformed: the message says where and how to fix it."""


@dataclass(frozen=True, slots=True)
class Advisory:
    """One vulnerability of one pin, as PyPI reports it (OSV data)."""

    id: str
    aliases: tuple[str, ...]
    fixed_in: tuple[str, ...]
    summary: str

    def names(self) -> set[str]:
        """:return: the id and its aliases (a GHSA and its PYSEC twin are one advisory)."""
        return {self.id, *self.aliases}


@dataclass(frozen=True, slots=True)
class Ignore:
    """An accepted advisory (an entry of ``tools/audit-ignore.yaml``)."""

    id: str
    package: str
    version: str
    reason: str


@dataclass(slots=True)
class PinResult:
    """What the audit found for one pin."""

    package: str
    version: str
    status: str = "unaudited"  # clean | vulnerable | ignored | unaudited
    source: str = ""  # which PyPI document audited it
    reason: str = ""  # why it is unaudited
    advisories: list[Advisory] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Report:
    """The whole audit."""

    pins: list[PinResult]
    stale: list[str]  # ignore entries that no longer hold, with why

    def count(self, status: str) -> int:
        """:return: pins with this status."""
        return sum(p.status == status for p in self.pins)

    @property
    def failed(self) -> bool:
        """Whether a vulnerability is unaccepted or an ignore entry is stale."""
        return self.count("vulnerable") > 0 or bool(self.stale)


def normalize(name: str) -> str:
    """:return: the PEP 503 name PyPI's URLs use."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> list[tuple[str, str]]:
    """:return: ``(package, version)`` of every pin; comments and blank lines are skipped.

    :raises AuditInputError: a line that is not ``name==version``.
    """
    if not path.is_file():
        raise AuditInputError(f"{path}: no such lock file; pass --lock or run 'make lock'")
    pins = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        match = _PIN.match(text)
        if match is None:
            raise AuditInputError(f"{path}:{number}: {text!r} is not an exact pin 'name==version'"
                                  "; regenerate the lock with 'make lock'")
        pins.append((normalize(match[1]), match[2].split("+", 1)[0]))
    if not pins:
        raise AuditInputError(f"{path}: no pins; regenerate the lock with 'make lock'")
    return pins


def read_ignores(path: Path) -> list[Ignore]:
    """:return: the accepted advisories; a missing file means none.

    :raises AuditInputError: an entry without its four fields or with an empty reason.
    """
    if not path.is_file():
        return []
    doc = yaml.safe_load(path.read_text()) or []
    if not isinstance(doc, list):
        raise AuditInputError(f"{path}: expected a list of entries (- id: …, package: …, "
                              "version: …, reason: …)")
    out = []
    for number, entry in enumerate(doc, start=1):
        keys = ("id", "package", "version", "reason")
        if not isinstance(entry, dict) or set(entry) != set(keys):
            raise AuditInputError(f"{path}: entry {number} must have exactly the keys "
                                  f"{', '.join(keys)}; got {entry!r}")
        values = {k: str(entry[k]).strip() for k in keys}
        if not all(values.values()):
            raise AuditInputError(f"{path}: entry {number} ({values['id'] or '?'}) has an empty "
                                  "field; say why the advisory is accepted")
        out.append(Ignore(id=values["id"], package=normalize(values["package"]),
                          version=values["version"], reason=values["reason"]))
    return out


def advisories(doc: dict[str, Any]) -> list[Advisory]:
    """:return: the live (not withdrawn) advisories of a PyPI JSON document."""
    out = []
    for item in doc.get("vulnerabilities") or []:
        if item.get("withdrawn"):
            continue
        out.append(Advisory(id=str(item["id"]), aliases=tuple(item.get("aliases") or ()),
                            fixed_in=tuple(item.get("fixed_in") or ()),
                            summary=str(item.get("summary") or item.get("details") or "")[:200]))
    return out


def audit_pin(package: str, version: str, fetch: Fetch) -> PinResult:
    """Audit one pin from PyPI (the release's JSON, else the project's when the pin is latest).

    :raises OSError: PyPI could not be reached.
    """
    result = PinResult(package=package, version=version)
    release = fetch(f"{PYPI}/{package}/{version}/json")
    if release is not None:
        result.source, found = "release", advisories(release)
    else:
        project = fetch(f"{PYPI}/{package}/json")
        if project is None:
            result.reason = "PyPI has no such project (a private or local package?)"
            return result
        latest = str(project.get("info", {}).get("version", ""))
        if latest != version:
            result.reason = (f"not the latest release ({latest}), and PyPI's document of "
                             f"{version} is unreachable here")
            return result
        result.source, found = "project (pin is the latest release)", advisories(project)
    result.advisories = found
    result.status = "vulnerable" if found else "clean"
    return result


def apply_ignores(results: Iterable[PinResult], ignores: list[Ignore]) -> list[str]:
    """Mark accepted advisories; :return: the ignore entries that no longer hold, with why."""
    by_pin = {(r.package, r.version): r for r in results}
    packages = {r.package: r for r in by_pin.values()}
    stale, used = [], set()
    for entry in ignores:
        pin = by_pin.get((entry.package, entry.version))
        if pin is None:
            now = packages.get(entry.package)
            stale.append(f"{entry.id}: {entry.package}=={entry.version} is no longer pinned"
                         + (f" (now {now.version}); re-audit and drop or update the entry"
                            if now else "; drop the entry"))
            continue
        if pin.status == "unaudited":
            continue  # nothing to hold it against here; the pin is listed as unaudited
        match = [a for a in pin.advisories if entry.id in a.names()]
        if not match:
            stale.append(f"{entry.id}: no such advisory for {entry.package}=={entry.version} any "
                         "more (withdrawn or fixed); drop the entry")
            continue
        fixes = sorted({v for a in match for v in a.fixed_in})
        if fixes:
            stale.append(f"{entry.id}: {entry.package} has a fixed release ({', '.join(fixes)});"
                         " upgrade the pin instead of accepting the advisory")
            continue
        used.add((entry.package, entry.version, entry.id))
    for pin in by_pin.values():
        if pin.status not in ("vulnerable", "ignored"):
            continue
        accepted = {i for p, v, i in used if (p, v) == (pin.package, pin.version)}
        pin.ignored = sorted(a.id for a in pin.advisories if a.names() & accepted)
        pin.status = "ignored" if len(pin.ignored) == len(pin.advisories) else "vulnerable"
    return stale


def fetch_json(url: str, timeout_s: float = 15.0, attempts: int = 3) -> dict[str, Any] | None:
    """GET a JSON document; :return: ``None`` on 404. :raises OSError: unreachable."""
    last: OSError | None = None
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (https only)
                doc: dict[str, Any] = json.load(response)
                return doc
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            last = exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            last = exc if isinstance(exc, OSError) else OSError(str(exc))
    raise OSError(f"{url}: {last}")


def run(lock: Path, ignore_file: Path, fetch: Fetch = fetch_json, workers: int = 16,
        progress: bool = False) -> Report:
    """Audit every pin of ``lock``.

    :raises AuditInputError: malformed lock or ignore file.
    :raises OSError: PyPI unreachable.
    """
    pins = read_lock(lock)
    ignores = read_ignores(ignore_file)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = pool.map(lambda pin: audit_pin(pin[0], pin[1], fetch), pins)
        if progress:
            from tqdm import tqdm

            jobs = tqdm(jobs, total=len(pins), desc="audit", unit="pin", file=sys.stderr)
        results = list(jobs)
    stale = apply_ignores(results, ignores)
    return Report(pins=results, stale=stale)


def summary(report: Report) -> str:
    """:return: what an operator reads: counts, then every finding and unaudited pin."""
    lines = [f"audited {len(report.pins)} pins: {report.count('clean')} clean, "
             f"{report.count('vulnerable')} vulnerable, {report.count('ignored')} accepted "
             f"(tools/audit-ignore.yaml), {report.count('unaudited')} unaudited"]
    for pin in report.pins:
        for adv in pin.advisories:
            mark = "accepted" if adv.id in pin.ignored else "VULNERABLE"
            fix = f"fixed in {', '.join(adv.fixed_in)}" if adv.fixed_in else "no fixed release"
            lines.append(f"  {mark}: {pin.package}=={pin.version} {adv.id} ({fix})")
    lines += [f"  STALE ignore entry: {why}" for why in report.stale]
    unaudited = [p for p in report.pins if p.status == "unaudited"]
    if unaudited:
        lines.append("  unaudited (no vulnerability data for these exact versions here):")
        lines += [f"    {p.package}=={p.version}: {p.reason}" for p in unaudited]
    return "\n".join(lines)


def main(argv: list[str] | None = None, fetch: Fetch = fetch_json) -> int:
    """``python -m tools.audit_deps [--lock F] [--ignore F] [--json F] [--strict]``."""
    parser = argparse.ArgumentParser(prog="python -m tools.audit_deps", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lock", type=Path, default=REPO / "requirements.lock")
    parser.add_argument("--ignore", type=Path, default=REPO / "tools" / "audit-ignore.yaml")
    parser.add_argument("--json", type=Path, default=None, help="write the full report here")
    parser.add_argument("--strict", action="store_true", help="fail on unaudited pins too")
    args = parser.parse_args(argv)
    try:
        report = run(args.lock, args.ignore, fetch, progress=sys.stderr.isatty())
    except AuditInputError as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"audit: PyPI is unreachable ({exc}); nothing was audited", file=sys.stderr)
        return 3
    print(summary(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"pins": [asdict(p) for p in report.pins],
                                         "stale": report.stale}, indent=1))
    if report.failed:
        return 1
    return 1 if args.strict and report.count("unaudited") else 0


if __name__ == "__main__":
    raise SystemExit(main())
