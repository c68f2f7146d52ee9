"""domain/ imports no I/O library (import-linter covers httpx & co; this adds jinja2, SMTP)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import helpdesk.notifier.domain as domain

pytestmark = pytest.mark.unit

FORBIDDEN = {"jinja2", "aiosmtplib", "aiosmtpd", "httpx", "socket", "secrets", "random", "time"}


def test_domain_imports_no_io_library() -> None:
    for path in Path(domain.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
