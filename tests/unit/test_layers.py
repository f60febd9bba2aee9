"""Imports point down the layer table of ARCHITECTURE.md; the public names all resolve."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import zsyft

ROOT = Path(zsyft.__file__).parent
# Top to bottom; a module may import its own layer or any layer below it.
# mpc is a pure leaf library (torch only), so the runtime may use its protocols.
LAYERS = ["api", "tensors", "remote", "runtime", "transport", "wire", "mpc", "errors"]
API_MODULES = {"__init__", "__main__", "hook", "nn", "workers", "serve", "bench"}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "launcher":
        return "launcher"
    if len(parts) == 1 or parts[1] in API_MODULES:
        return "api"
    return parts[1]


def imports_of(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return [n for n in names if n.split(".")[0] in ("zsyft", "launcher")]


MODULES = sorted(ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path):
    module = "zsyft." + ".".join(path.relative_to(ROOT).with_suffix("").parts)
    own = layer_of(module.removesuffix(".__init__"))
    for imported in imports_of(path):
        target = layer_of(imported)
        if target == "launcher":
            assert own == "api", f"{module} imports {imported}: only the API layer may"
        elif imported != "zsyft":
            assert LAYERS.index(target) >= LAYERS.index(own), (
                f"{module} ({own}) imports {imported} ({target}), which is above it"
            )


def test_mpc_is_pure():
    for path in (ROOT / "mpc").rglob("*.py"):
        assert not imports_of(path) or all(
            i.startswith("zsyft.mpc") for i in imports_of(path)
        ), f"{path.name} imports outside zsyft.mpc"


def test_every_exported_name_resolves():
    for name in zsyft.__all__:
        assert getattr(zsyft, name) is not None, name
    assert sorted(zsyft.__all__) == sorted(set(zsyft.__all__))
