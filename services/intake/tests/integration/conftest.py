"""One intake stack (topic, database, in-process service) for every integration test here.

Starting a service costs seconds (consumer group join), so the tests of this package share one
and isolate themselves by creating their own accounts, staff and keys.
"""

from __future__ import annotations

import pytest

from tests.support.stack import bootstrap_admin, new_stack, running_intake

stack = pytest.fixture(scope="package", name="stack")(new_stack)
intake = pytest.fixture(scope="package", name="intake")(running_intake)
admin = pytest.fixture(scope="package", name="admin")(bootstrap_admin)
