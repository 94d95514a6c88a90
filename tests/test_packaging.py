"""What ships: the wheel's layout, and imports that must stay light."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import ROOT


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_sdk_import_pulls_no_server_or_framework() -> None:
    modules = _imported_after("import journeykit.sdk")
    for heavy in ("starlette", "uvicorn", "django", "flask", "journeykit.collector"):
        assert heavy not in modules, f"importing journeykit.sdk imported {heavy}"


def test_consent_import_pulls_nothing_else_of_ours() -> None:
    modules = _imported_after("import journeykit.consent")
    assert "journeykit.sdk" not in modules
    assert "journeykit.collector" not in modules


def test_collector_package_import_is_light() -> None:
    modules = _imported_after("import journeykit.collector")
    assert "starlette" not in modules
    assert "uvicorn" not in modules


@pytest.mark.parametrize("package", ["sdk", "collector", "consent"])
def test_each_package_is_typed(package: str) -> None:
    assert (ROOT / package / "py.typed").is_file()


def test_wheel_holds_only_journeykit(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("journeykit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"journeykit", wheel.name.split("-py3")[0] + ".dist-info"}
    for package in ("sdk", "collector", "consent"):
        assert f"journeykit/{package}/__init__.py" in names
        assert f"journeykit/{package}/py.typed" in names
    assert not any(name.startswith("journeykit/tests") or "/tests/" in name for name in names)
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))
    )
    assert b"journeykit = journeykit.collector._cli:main" in entry_points
