"""Imports point one way: no module of consumer/ imports one of a higher layer, and the plugin API
(`import consumer`) loads no Kafka client.

The layers, lowest first, are `LAYERS`; consumer/__init__.py is the public facade and exempt. The
map itself prints with
``.venv/bin/python -c "from tests.unit.test_layers import module_map; print(module_map())"``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests._support.kafka_helpers import REPO

PACKAGE = REPO / "consumer"
LAYERS = {
    "consumer.errors": 0,
    "consumer.events": 0,
    "consumer.cloudevents": 0,
    "consumer.outcomes": 0,
    "consumer.secret": 0,
    "consumer.redaction": 0,
    "consumer.http": 0,
    "consumer.handler_api": 0,
    "consumer.backoff": 0,
    "consumer.bootstrap": 0,
    "consumer.msgspec_errors": 0,
    "consumer.gc_tuning": 0,
    "consumer": 1,  # the facade: importing it loads layers 0 and 1
    "consumer.settings": 1,
    "consumer.plugins": 1,
    "consumer.kafka": 2,
    "consumer.engine": 3,
    "consumer.deadletters": 3,
    "consumer.handlers": 3,
    "consumer.observability": 4,
    "consumer.ingress": 5,
    "consumer.cli": 6,
    "consumer.__main__": 6,
    "consumer.devkit": 7,
}
"""Dotted name (a module or a package and everything in it) to its layer; the longest one
naming a module decides."""
FACADE = "consumer"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """The layer of `module`, by the longest entry of `LAYERS` naming it or a package above it."""
    if module == FACADE:
        return LAYERS[FACADE]
    parts = module.split(".")
    for end in range(len(parts), 1, -1):  # the facade's entry names no module but itself
        prefix = ".".join(parts[:end])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise KeyError(f"{module} has no layer in LAYERS")


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Every consumer module `module` imports, anywhere in it (functions, TYPE_CHECKING too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                # `from consumer.kafka import security` imports a module; `from x import name`, x.
                child = f"{base}.{alias.name}"
                found.add(child if child in known else base)
    return {name for name in found if name == FACADE or name.startswith(FACADE + ".")}


def edges() -> list[tuple[str, str, int, int]]:
    """(importer, imported, importer's layer, imported's layer) for every import in consumer/."""
    modules = _modules()
    known = set(modules)
    return [
        (module, imported, layer_of(module), layer_of(imported))
        for module, path in modules.items()
        if module != FACADE
        for imported in sorted(_imports(module, path, known))
    ]


def module_map() -> str:
    """Each module with its layer, lines and what it imports from consumer/, by layer."""
    modules = _modules()
    imports: dict[str, list[str]] = {}
    for module, imported, _, _ in edges():
        imports.setdefault(module, []).append(imported)
    lines = []
    for module in sorted(modules, key=lambda m: (layer_of(m), m)):
        count = len(modules[module].read_text().splitlines())
        uses = ", ".join(imports.get(module, [])) or "-"
        lines.append(f"{layer_of(module)} {module} ({count} lines): {uses}")
    return "\n".join(lines)


def test_no_module_imports_a_higher_layer() -> None:
    """Every import inside consumer/ (function-level and TYPE_CHECKING ones included) goes to
    the importer's own layer or a lower one."""
    upward = [
        f"{module} (layer {low}) imports {imported} (layer {high})"
        for module, imported, low, high in edges()
        if high > low
    ]
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_observability_reads_the_worker_without_importing_the_engine() -> None:
    """Observability is above the engine but reads it through its own Protocols (a worker view,
    the observers the command line hands the worker): it imports no engine module at all."""
    reaching = [
        f"{module} imports {imported}"
        for module, imported, _, _ in edges()
        if module.startswith("consumer.observability") and imported.startswith("consumer.engine")
    ]
    assert not reaching, "\n".join(reaching)


def test_every_module_has_a_layer() -> None:
    """A new package cannot slip past the direction check without a place in `LAYERS`."""
    missing = []
    for module in _modules():
        try:
            layer_of(module)
        except KeyError:
            missing.append(module)
    assert not missing, f"add to LAYERS: {missing}"


def test_import_consumer_loads_no_kafka_client() -> None:
    """The plugin API imports without aiokafka: a handler package pays nothing for Kafka."""
    code = "import consumer, sys; print(*(m for m in sys.modules if m.startswith('aiokafka')))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == [], result.stdout
