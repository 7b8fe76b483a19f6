"""No secrets in the repository (issue 8, item 5): every tracked file is scanned for the shapes
credentials take — cloud keys, private keys, chat and code-host tokens, webhook URLs with their
secret path, URLs with a password, and ``password``/``token``/``secret`` assignments holding a
literal. Placeholders (``change-me...``, ``<...>``, ``${VAR}``) and the tests' own throw-away
tokens (marked ``noqa: S105``, ruff's hard-coded-password rule, which also runs on the code)
are not secrets.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PATTERNS = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |OPENSSH |DSA )?PRIVATE KEY-----"),
    "Slack token": re.compile(r"\bxox[abprs]-[0-9A-Za-z-]{10,}"),
    "Slack webhook": re.compile(r"hooks\.slack\.com/services/T[0-9A-Z]{6,}/B[0-9A-Z]{6,}/"
                                r"[0-9A-Za-z]{16,}"),
    "Telegram bot token": re.compile(r"\b\d{8,10}:AA[0-9A-Za-z_-]{33}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[0-9A-Za-z]{36}\b"),
    "URL with a password": re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]*:([^\s/@'\"]{6,})@"),
    "secret assignment": re.compile(
        r"(?i)\b[\w.-]*(?:password|passwd|secret|token|api_key|access_key)[\w.-]*\s*[:=]\s*"
        r"['\"]?([^\s'\"#,}]{12,})"),
}
PLACEHOLDER = re.compile("|".join((
    r"change-?me", r"<[^>]*>", r"\$\{?[A-Z_]", "example", "placeholder", "dummy", "xxxx",
    r"\*\*\*", "^test", "^password$", "minioadmin", "testing",  # documented local defaults
    "environ", "getenv", r"os\.", r"\w+\(", r"secrets\.", "token_hex", r"\.get$",  # code
    r"^[A-Z][A-Z0-9_]*(?:\\n)?$", "_env$", "_ENV$", "^mia[-_]",  # variable and service names
    "^/", r"[{}\[\]]",  # paths, format strings and regular expressions
)))
ALLOWED_MARK = "noqa: S105"  # a test's own throw-away token, ruff's rule acknowledged


def tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    return [REPO / p for p in out.stdout.decode().split("\0") if p]


def findings(path: Path, text: str) -> list[str]:
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        if ALLOWED_MARK in line:
            continue
        for kind, rx in PATTERNS.items():
            for m in rx.finditer(line):
                value = m.group(m.lastindex or 0)
                if m.lastindex and PLACEHOLDER.search(value):
                    continue
                found.append(f"{path.relative_to(REPO)}:{n}: {kind}")
    return found


def test_no_tracked_file_holds_a_secret():
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: no tracked files to scan")
    hits = []
    for path in tracked():
        if path == Path(__file__) or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # binary
        hits += findings(path, text)
    assert hits == []  # each hit names file:line and the kind, never the value


@pytest.mark.parametrize("line", [
    "aws_access_key_id = AKIAIOSFODNN7EXAMPLF",
    "-----BEGIN OPENSSH PRIVATE KEY-----",
    "url: https://hooks.slack.com/services/T0ABCDEFG/B0ABCDEFG/abcdefghijklmnop1234",
    "MLFLOW_TRACKING_URI=postgresql://mlflow:s3cr3t-pw@db:5432/mlflow",
    "  admin_password: Tr0ub4dor&3horse",
    "TELEGRAM=123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1",
])
def test_the_scanner_finds_each_shape_of_secret(line, tmp_path):
    assert findings(REPO / "x.txt", line)


@pytest.mark.parametrize("line", [
    "MIA_ADMIN_TOKEN=change-me-admin-token",
    "password: ${POSTGRES_PASSWORD:?set it in docker/.env}",
    "admin_token_env: MIA_ADMIN_TOKEN",
    "url: redis://:<password>@host:6379/0",
    'TOKEN = "chaos-security-token-0123456789abcdef"  # noqa: S105 - a test\'s own token',
    "token = secrets.token_hex(16)",
])
def test_placeholders_and_variable_names_are_not_secrets(line):
    assert findings(REPO / "x.txt", line) == []
