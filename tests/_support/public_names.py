"""Which consumer names a piece of code reaches, and which of them are not public."""

from __future__ import annotations

import ast

import consumer


def consumer_names(tree: ast.AST) -> list[str]:
    """Every ``consumer...`` name a piece of code reaches: imports and attribute chains."""
    used: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "consumer":
            used += [f"{node.module}:{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            used += [a.name for a in node.names if a.name.split(".")[0] == "consumer"]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "consumer"
        ):
            used.append(f"consumer:{node.attr}")
    return used


def not_public(used: list[str]) -> list[str]:
    public = {f"consumer:{name}" for name in consumer.__all__} | {"consumer"}
    return [name for name in used if name not in public]
