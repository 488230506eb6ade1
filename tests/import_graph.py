"""The project's imports, read from the source (``ast``): who imports what, where, and how heavy."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAGES = ("collect", "filter", "detect", "shards", "pretrain", "finetune")
PACKAGES = (*STAGES, "stream", "common", "bench")
WIRING = ("pipeline", "demo")
# Libraries whose import costs seconds or pulls in native runtimes: a project module may be
# imported inside a function only to defer one of these.
HEAVY = frozenset(
    [
        "torch",
        "torchvision",
        "ultralytics",
        "ray",
        "cv2",
        "av",
        "matplotlib",
        "lmdb",
        "webdataset",
        "yt_dlp",
        "pandas",
        "pyarrow",
        "scipy",
        "sklearn",
        "ai_edge_litert",
        "tensorboard",
    ]
)


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # dotted module name (project) or top-level library name
    line: int
    local: bool  # inside a function or method


@cache
def module_files() -> dict[str, Path]:
    """Dotted name -> file of every project module."""
    out = {name: REPO / f"{name}.py" for name in WIRING}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` refers to (a ``from pkg import mod`` may name a submodule)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


@cache
def imports() -> tuple[Import, ...]:
    """Every absolute import in the project, project targets resolved to modules."""
    modules = module_files()
    found = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        local_nodes = {
            id(n)
            for f in ast.walk(tree)
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
            for n in ast.walk(f)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                target = _resolve(name, modules) or name.split(".")[0]
                found.append(Import(module, target, node.lineno, id(node) in local_nodes))
    return tuple(found)


def is_project(name: str) -> bool:
    return name in module_files()


def package_of(module: str) -> str:
    return module.split(".")[0]


@cache
def heavy_libraries(module: str) -> frozenset[str]:
    """The heavy libraries importing ``module`` loads (its module-level imports, transitively)."""
    out: set[str] = set()
    for imp in imports():
        if imp.importer != module or imp.local or imp.target == module:
            continue
        if is_project(imp.target):
            out |= heavy_libraries(imp.target)
        elif imp.target in HEAVY:
            out.add(imp.target)
    return frozenset(out)
