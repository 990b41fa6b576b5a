"""Endpoints (`GET /items/{id}`) bounded, so a scanner hitting random paths cannot blow up the table.

An endpoint is an HTTP method and a route template. API Gateway gives the template itself
(`resourcePath`, `/items/{id}`), which the API's own definition bounds. Behind a greedy resource
(`/{proxy+}`) it says nothing, so the request's path is matched against `ROUTE_TEMPLATES`; a path
that matches none, a method that is not HTTP's, or a template we would not store, counts under
`OTHER` (`GET (other)`).
"""

from __future__ import annotations

import re
from functools import lru_cache

from contract.events import MAX_REQUEST_FIELD_CHARS

OTHER = "(other)"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_ROUTE_CHARS = 200
_TEMPLATE = re.compile(r"^/[A-Za-z0-9._~{}/+-]{0,199}$")
_PARAMETER = re.compile(r"\{[A-Za-z0-9_]+\+?\}")


class Routes:
    def __init__(self, templates: tuple[str, ...] = ()) -> None:
        for template in templates:
            if not _TEMPLATE.match(template):
                raise ValueError(f"not a route template: {template!r} (e.g. /items/{{id}})")
        self._patterns = [(template, _pattern(template)) for template in templates]
        self.endpoint = lru_cache(maxsize=4096)(self._endpoint)  # per instance: routes repeat

    def _endpoint(self, method: str | None, resource_path: str | None, path: str | None) -> str:
        """`METHOD route`, with everything unknown folded into `OTHER`."""
        verb = method if method in METHODS else OTHER
        return f"{verb} {self._route(resource_path, path)}"

    def _route(self, resource_path: str | None, path: str | None) -> str:
        if resource_path and "+}" not in resource_path and _TEMPLATE.match(resource_path):
            return resource_path
        matched = path[:MAX_REQUEST_FIELD_CHARS] if path else None  # as the authorizer cut its event's
        for template, pattern in self._patterns:
            if matched and pattern.fullmatch(matched):
                return template
        return OTHER


def _pattern(template: str) -> re.Pattern[str]:
    parts, position = [], 0
    for parameter in _PARAMETER.finditer(template):
        parts.append(re.escape(template[position : parameter.start()]))
        parts.append(".+" if parameter.group().endswith("+}") else "[^/]+")
        position = parameter.end()
    parts.append(re.escape(template[position:]))
    return re.compile("".join(parts))
