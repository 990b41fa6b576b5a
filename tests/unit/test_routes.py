"""Endpoints are bounded: whatever paths a scanner tries, the table holds one item per known route
and one overflow bucket per method."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.routes import OTHER, Routes
from contract.events import MAX_REQUEST_FIELD_CHARS

ROUTES = Routes(("/items/{id}", "/items/{id}/lines/{line}", "/files/{path+}", "/v1/usage"))


@pytest.mark.parametrize(
    ("method", "resource", "path", "endpoint"),
    [
        ("GET", "/items/{id}", "/items/42", "GET /items/{id}"),  # API Gateway names the template
        ("GET", "/{proxy+}", "/items/42", "GET /items/{id}"),  # a greedy resource: the path decides
        ("POST", "/{proxy+}", "/items/42/lines/7", "POST /items/{id}/lines/{line}"),
        ("GET", "/{proxy+}", "/files/a/b/c.txt", "GET /files/{path+}"),
        ("GET", "/{proxy+}", "/items/42/extra", f"GET {OTHER}"),  # no template matches
        ("GET", "/{proxy+}", "/wp-admin/install.php", f"GET {OTHER}"),
        ("BREW", "/items/{id}", "/items/42", f"{OTHER} /items/{{id}}"),  # not an HTTP method
        (None, None, None, f"{OTHER} {OTHER}"),
        ("GET", "/items/<script>", "/x/1", f"GET {OTHER}"),  # a template we would not store
        ("GET", "/" + "a" * 300, "/x", f"GET {OTHER}"),
    ],
)
def test_each_request_names_one_endpoint(
    method: str | None, resource: str | None, path: str | None, endpoint: str
) -> None:
    assert ROUTES.endpoint(method, resource, path) == endpoint


@given(st.lists(st.text(min_size=1, max_size=80).map(lambda p: "/" + p), max_size=300))
def test_a_scanner_behind_a_greedy_resource_adds_at_most_one_endpoint(paths: list[str]) -> None:
    endpoints = {ROUTES.endpoint("GET", "/{proxy+}", path) for path in paths}
    known = {"GET /items/{id}", "GET /items/{id}/lines/{line}", "GET /files/{path+}", "GET /v1/usage"}
    assert endpoints <= known | {f"GET {OTHER}"}


def test_a_template_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="not a route template"):
        Routes(("items/{id}",))


def test_a_long_path_names_the_same_endpoint_in_the_event_and_the_access_log() -> None:
    """The authorizer cuts the event's path to MAX_REQUEST_FIELD_CHARS, the access-log decoder to
    MAX_TEXT_CHARS: matched alike, the two records of a request name one endpoint (metering reconcile)."""
    routes = Routes(("/files/{name}",))
    logged = "/files/" + "a" * (MAX_REQUEST_FIELD_CHARS - 7) + "/more"  # its second segment past the cut
    metered = logged[:MAX_REQUEST_FIELD_CHARS]  # what the usage event holds
    assert routes.endpoint("GET", "/{proxy+}", logged) == routes.endpoint("GET", "/{proxy+}", metered)
    assert routes.endpoint("GET", "/{proxy+}", metered) == "GET /files/{name}"
