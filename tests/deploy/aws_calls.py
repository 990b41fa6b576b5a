"""Which AWS operations a runtime can reach, read from its code rather than listed by hand.

A static call graph over the modules the runtime's entry points import (transitively, within its
packages): a function reaches the functions it names (called or passed on, resolved by name within
those modules; a class named reaches all its methods; an over-approximation) and the botocore
operations it names on any object (`.update_item(`, `get_paginator("list_shards")`,
`get_waiter("table_exists")`). Operations become IAM actions.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import botocore.session
from botocore import xform_name
from botocore.exceptions import UnknownServiceError

ROOT = Path(__file__).resolve().parents[2]
# IAM authorises these batch operations under the single-message action.
IAM_ACTION_OF = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


@dataclass
class CallGraph:
    functions: dict[str, ast.AST] = field(default_factory=dict)  # "module:qualname" -> node
    by_name: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # short name -> keys

    @classmethod
    def of(cls, packages: list[str], entry_modules: list[str]) -> CallGraph:
        """The functions of the modules `entry_modules` import, transitively, within `packages`."""
        trees = {
            ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): ast.parse(
                path.read_text()
            )
            for package in packages
            for path in sorted((ROOT / package).rglob("*.py"))
        }
        graph, todo, seen = cls(), list(entry_modules), set()
        while todo:
            module = todo.pop()
            if module in seen or module not in trees:
                continue
            seen.add(module)
            graph._index(module, trees[module])
            todo += _imported(trees[module], trees)
        return graph

    def _index(self, module: str, tree: ast.Module) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef):
                        key = f"{module}:{node.name}.{item.name}"
                        self._add(key, item.name, item)
                        # A class mentioned reaches all its methods: frameworks (the KCL, a thread
                        # pool) call them from outside our code.
                        self.by_name[node.name].add(key)
            elif isinstance(node, ast.FunctionDef):
                self._add(f"{module}:{node.name}", node.name, node)

    def _add(self, key: str, name: str, node: ast.AST) -> None:
        self.functions[key] = node
        self.by_name[name].add(key)

    def reachable_names(self, entries: list[str]) -> set[str]:
        """Every attribute and name mentioned by the functions reachable from `entries`."""
        seen, todo, names = set(), list(entries), set()
        while todo:
            key = todo.pop()
            if key in seen:
                continue
            seen.add(key)
            for node in ast.walk(self.functions[key]):
                mentioned = _mentioned(node)
                if mentioned is None:
                    continue
                names.add(mentioned)
                todo.extend(self.by_name.get(mentioned, ()))
        return names


def _imported(tree: ast.Module, modules: dict[str, ast.Module]) -> list[str]:
    """The modules of ours a module imports (`from a.b import c` may name module a.b.c)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
            found += [
                f"{node.module}.{alias.name}"
                for alias in node.names
                if f"{node.module}.{alias.name}" in modules
            ]
    return found


def _mentioned(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("get_paginator", "get_waiter")
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return f"{node.func.attr}:{node.args[0].value}"
    return None


def iam_actions(packages: list[str], entries: list[str], services: list[str]) -> set[str]:
    """The IAM actions the code reachable from `entries` may call, on `services` (boto3 names)."""
    graph = CallGraph.of(packages, sorted({entry.partition(":")[0] for entry in entries}))
    names = graph.reachable_names(entries)
    session = botocore.session.get_session()
    actions: dict[str, set[str]] = defaultdict(set)  # snake name -> actions of every service having it
    for service in services:
        model = session.get_service_model(service)
        for operation in model.operation_names:
            actions[xform_name(operation)].add(f"{service}:{operation}")
            actions[f"get_paginator:{xform_name(operation)}"].add(f"{service}:{operation}")
        for waiter, operation in _waiters(session, service):
            actions[f"get_waiter:{xform_name(waiter)}"].add(f"{service}:{operation}")
    found = {name: actions[name] for name in names if name in actions}
    ambiguous = {name: sorted(both) for name, both in found.items() if len(both) > 1}
    assert not ambiguous, f"operations named alike in several services: {ambiguous}"
    return {IAM_ACTION_OF.get(action, action) for both in found.values() for action in both}


def _waiters(session: botocore.session.Session, service: str) -> list[tuple[str, str]]:
    try:
        model = session.get_waiter_model(service)
    except UnknownServiceError:  # a service without waiters
        return []
    return [(name, model.get_waiter(name).operation) for name in model.waiter_names]
