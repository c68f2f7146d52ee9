"""The alert rules pass their promtool unit tests; the dashboards on disk are the generated ones."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from helpdesk.deploy._proc import repo_root
from helpdesk.deploy.dashboards import DASHBOARDS, Dashboard, dashboards_dir, render

pytestmark = pytest.mark.unit


def test_alert_rules_pass_their_promtool_tests() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    prometheus = repo_root() / "deploy" / "prometheus"
    tests = sorted((prometheus / "tests").glob("*.yml"))
    assert tests
    checked = subprocess.run(
        [promtool, "check", "rules", *sorted((prometheus / "rules").glob("*.yml"))],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", *tests], capture_output=True, text=True, cwd=prometheus
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.uid)
def test_committed_dashboard_is_the_generated_one(dashboard: Dashboard) -> None:
    path = dashboards_dir() / dashboard.file_name
    assert path.read_text(encoding="utf-8") == render(dashboard), (
        f"{path.name} is stale: run `python -m helpdesk.deploy.dashboards`"
    )
