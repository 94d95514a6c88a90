"""Each integration refuses cleanly without its framework; the SDK never imports them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

BLOCK = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == {framework!r}:
            raise ImportError(f"No module named {{name!r}}")
        return None

sys.meta_path.insert(0, Block())
try:
    import journeykit.sdk.integrations.{module}
except ImportError as exc:
    print(exc)
"""


@pytest.mark.parametrize(("module", "framework"), [("django", "django"), ("flask", "flask")])
def test_missing_framework_names_the_extra(module: str, framework: str) -> None:
    code = BLOCK.format(framework=framework, module=module)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert f"pip install 'journeykit[{module}]'" in out.stdout


def loaded_after(statement: str) -> list[str]:
    code = (
        f"import json, sys; {statement}; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('django', 'flask', 'starlette', 'fastapi') or m.startswith('journeykit.sdk.integ'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names: list[str] = json.loads(out.stdout)
    return names


def test_the_sdk_imports_no_integration_and_no_framework() -> None:
    assert loaded_after("import journeykit.sdk") == []
    shared = loaded_after("import journeykit.sdk.integrations")
    assert "journeykit.sdk.integrations._tracker" in shared
    assert [m for m in shared if not m.startswith("journeykit.")] == []
