"""Subject ids and output names cannot reach outside the places they are meant for.

Subject ids arrive in admin URLs and on the command line; they are data, never part of a file
name. Output names are the operator's own choice and are used as given, and nothing else is
written beside them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from helpers import PSEUDONYM_KEY, running_collector
from pydantic import SecretStr
from starlette.routing import Route

from journeykit.collector._cli import main

ADMIN_KEY = "admin-key-0123456789abcdef-trv"
SUBJECTS = [
    "../../../../etc/passwd",
    "..",
    "../outside",
    "a/../../b",
    "..\\..\\windows",
    "/etc/passwd",
    "x" * 5_000,
]
# As they reach a URL path: encoded slashes and dots, and NUL.
URL_SUBJECTS = ["..%2F..%2Foutside", "%2e%2e%2f%2e%2e%2foutside", "a%00b", "%2F", "x" * 5_000]


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_subject_ids_in_admin_urls_stay_data(tmp_path: Path) -> None:
    root = tmp_path / "root"
    data = root / "data"
    with running_collector(data, admin_key=SecretStr(ADMIN_KEY)) as c:
        routes = [
            r
            for r in c.app.routes
            if isinstance(r, Route) and r.path.startswith("/admin/") and r.param_convertors
        ]
        outside_before = tree(tmp_path) - {s for s in tree(tmp_path) if s.startswith("root/data")}
        tried = 0
        for route in routes:
            for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                for subject in URL_SUBJECTS:
                    path = re.sub(r"\{[^}]+\}", subject, route.path)
                    answer = httpx.request(
                        method, c.url + path, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
                    )
                    assert answer.status_code < 500, (method, path, answer.text)
                    tried += 1
        outside_after = tree(tmp_path) - {s for s in tree(tmp_path) if s.startswith("root/data")}
        assert outside_after == outside_before
        for name in tree(data):
            assert "outside" not in name, name
            assert "passwd" not in name, name
        # Until an admin route takes a subject, this checks nothing over HTTP; the CLI test
        # below still does.
        assert tried == len(URL_SUBJECTS) * sum(
            len((r.methods or {"GET"}) - {"HEAD"}) for r in routes
        )


def journeykit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "journeykit.collector", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_subject_ids_on_the_command_line_stay_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (tmp_path / "outside").write_text("not to be read or touched\n")
    monkeypatch.chdir(work)
    monkeypatch.setenv("JOURNEYKIT_PSEUDONYM_KEY", PSEUDONYM_KEY)
    before = outside_data(tmp_path)
    for subject in SUBJECTS:
        for command in (
            ["consent", "history", subject],
            ["consent", "state", subject, "--at", "2024-01-01T00:00:00Z"],
            ["dsr", "suppress", subject],
            ["dsr", "unsuppress", subject],
        ):
            try:  # the real command line, in this process: a subprocess each costs a second
                status = main([*command, "--data-dir", "data"])
            except SystemExit as exc:  # refused by the argument parser
                status = exc.code
            # 0 done, 1 refused with a message, 2 refused by the argument parser.
            assert status in (0, 1, 2), (command, capsys.readouterr())
            assert "not to be read" not in capsys.readouterr().out
    assert outside_data(tmp_path) == before
    for name in tree(work / "data"):
        assert ".." not in name, name
        assert "passwd" not in name, name
        assert "windows" not in name, name


def outside_data(root: Path) -> set[str]:
    return {s for s in tree(root) if not s.startswith("work/data")}


def test_output_names_are_used_as_given_and_nothing_else_is_written(tmp_path: Path) -> None:
    work = tmp_path / "work"
    data = work / "data"
    with running_collector(data, consent_regime="opt_in") as c:
        consent = {"categoryPreferences": {"analytics": True}}
        for subject in SUBJECTS[:4]:
            event = {"type": "identify", "userId": subject, "context": {"consent": consent}}
            httpx.post(c.url + "/v1/batch", json={"batch": [event]}, headers=c.auth())
    (work / "out").mkdir()
    before = tree(tmp_path)
    outputs = {
        "out/../export.csv": ["consent", "export", "--out", "out/../export.csv"],
        "out/report.html": ["consent", "report", "--out", "out/report.html"],
    }
    for name, command in outputs.items():
        done = journeykit(*command, "--data-dir", "data", cwd=work)
        assert done.returncode == 0, done.stderr
        assert (work / name).is_file()
    created = tree(tmp_path) - before
    assert created == {"work/export.csv", "work/out/report.html"}
