"""How bin/test shares the suite between its two xdist workers (tests/conftest.py)."""

from __future__ import annotations

import inspect

from xdist.scheduler import LoadScopeScheduling

from tests.conftest import scope_of


def test_a_file_is_one_unit_and_the_container_tier_is_one_unit() -> None:
    """Tests of one file share a unit (module fixtures start once); every container file shares one."""
    assert scope_of("tests/unit/test_cost.py::test_a[x]") == scope_of("tests/unit/test_cost.py::test_b")
    assert scope_of("tests/unit/test_cost.py::test_a") != scope_of("tests/unit/test_flush.py::test_a")
    assert scope_of("tests/containers/test_image.py::test_a") == scope_of(
        "tests/containers/test_ecs_task.py::test_b"
    )


def test_xdist_still_splits_scopes_through_the_method_we_override() -> None:
    """The scheduler calls `_split_scope(nodeid)` (a private method): this fails first if it moves."""
    assert list(inspect.signature(LoadScopeScheduling._split_scope).parameters) == ["self", "nodeid"]
    assert "_split_scope(" in inspect.getsource(LoadScopeScheduling.schedule)
