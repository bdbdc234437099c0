"""`make serve` installs what serving needs only; the goals CI runs (check, bench-quick, test) still get their tools."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _extras(tmp_path: Path, *goals: str) -> set[str]:
    if shutil.which("make") is None:
        pytest.fail("make is not installed")
    proc = subprocess.run(
        ["make", "-n", "-C", str(REPO), f"VENV={tmp_path / 'venv'}", *goals],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    found = re.findall(r'pip install --quiet -e \\?"\.\[([a-z,]+)\]', proc.stdout)
    assert found, proc.stdout
    return set(",".join(found).split(","))


def test_make_serve_installs_the_cpu_extra_only(tmp_path):
    assert _extras(tmp_path, "serve") == {"cpu"}
    assert _extras(tmp_path, "model") == {"cpu"}


@pytest.mark.parametrize("goal", ["test", "check", "bench-quick", "unit"])
def test_the_ci_goals_install_the_test_and_bench_tools(tmp_path, goal):
    assert _extras(tmp_path, goal) == {"cpu", "test", "bench"}


def test_ci_runs_only_goals_that_install_the_tools():
    goals = re.findall(r"^make (\S+)", (REPO / ".ci" / "run").read_text(), re.M)
    assert goals and set(goals) <= {"check", "bench-quick", "test"}, goals
