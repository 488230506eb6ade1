"""The import contract (issue 14), read from the source: stages never import each other, no
import cycles, and a project module is imported inside a function only to defer a heavy library."""

from __future__ import annotations

from pathlib import Path

from import_graph import (
    HEAVY,
    STAGES,
    heavy_libraries,
    imports,
    is_project,
    module_files,
    package_of,
)


def project_imports():
    return [imp for imp in imports() if is_project(imp.target) and imp.target != imp.importer]


def test_the_graph_sees_the_project():
    """The checks below could pass on an empty graph: make sure they read real imports."""
    modules = module_files()
    assert {"pipeline", "demo", "detect.run", "common.settings", "shards.build"} <= set(modules)
    pairs = {(imp.importer, imp.target) for imp in project_imports()}
    assert ("detect.run", "detect.batch_runner") in pairs
    assert ("shards.sources.pick", "shards.sources.images") in pairs
    assert "torch" in heavy_libraries("pretrain.trainer") and "torch" not in heavy_libraries(
        "common.settings"
    )


def test_stages_never_import_each_other():
    crossing = [
        f"{imp.importer}:{imp.line} imports {imp.target}"
        for imp in project_imports()
        if package_of(imp.importer) in STAGES
        and package_of(imp.target) in STAGES
        and package_of(imp.importer) != package_of(imp.target)
    ]
    assert not crossing, "stages talk through workspace files; shared code goes to common/:\n" + "\n".join(
        crossing
    )


def test_shared_code_knows_no_stage():
    upward = [
        f"{imp.importer}:{imp.line} imports {imp.target}"
        for imp in project_imports()
        if package_of(imp.importer) == "common" and package_of(imp.target) != "common"
    ]
    assert not upward, "\n".join(upward)


def test_only_the_wiring_imports_the_streaming_build():
    """``stream/`` runs every dataset stage's per-video code: it sits above them, like the CLI."""
    upward = [
        f"{imp.importer}:{imp.line} imports {imp.target}"
        for imp in project_imports()
        if package_of(imp.target) == "stream" and package_of(imp.importer) in (*STAGES, "common")
    ]
    assert not upward, "\n".join(upward)
    assert ("stream.video", "detect.run") in {(imp.importer, imp.target) for imp in project_imports()}


def test_no_import_cycles():
    """Every import counts, module-level or inside a function (where cycles used to hide)."""
    graph: dict[str, set[str]] = {}
    for imp in project_imports():
        graph.setdefault(imp.importer, set()).add(imp.target)
    state: dict[str, int] = {}  # 1 visiting, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_function_level_imports_only_defer_heavy_libraries():
    hidden = [
        f"{imp.importer}:{imp.line} imports {imp.target} inside a function, deferring no heavy library"
        for imp in project_imports()
        if imp.local and not (heavy_libraries(imp.target) - heavy_libraries(imp.importer))
    ]
    assert not hidden, f"heavy: {', '.join(sorted(HEAVY))}\n" + "\n".join(hidden)


def test_no_bench_script_hides_a_package():
    """``python bench/x.py`` puts bench/ first on sys.path: a bench script named like a top-level
    package of the project would be imported in its place."""
    root = Path(__file__).resolve().parent.parent
    packages = {p.parent.name for p in root.glob("*/__init__.py")} | {p.stem for p in root.glob("*.py")}
    assert {"detect", "shards", "pretrain", "common"} <= packages
    assert not {p.stem for p in (root / "bench").glob("*.py")} & (packages - {"bench"})


def test_the_architecture_page_names_every_package():
    """docs/architecture.md matches the tree: every stage, every package of common/ is named there."""
    root = Path(__file__).resolve().parent.parent
    page = (root / "docs" / "architecture.md").read_text()
    for stage in STAGES:
        assert f"`{stage}/`" in page, stage
    for package in sorted(p.parent.name for p in (root / "common").glob("*/__init__.py")):
        assert f"`{package}/`" in page, f"common/{package}/ is not described in docs/architecture.md"


def test_files_and_functions_stay_small():
    """A ceiling, not a target (issue 27): a module holds one idea whole, so no Python file over
    600 lines (past that it holds more than one), no function over 60."""
    import ast

    root = Path(__file__).resolve().parent.parent
    files = [p for p in root.rglob("*.py") if not {".venv", "build", ".git"} & set(p.relative_to(root).parts)]
    assert len(files) > 100
    too_long = []
    for path in files:
        source = path.read_text()
        if source.count("\n") > 600:
            too_long.append(f"{path.relative_to(root)}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.end_lineno - node.lineno >= 60
            ):
                too_long.append(f"{path.relative_to(root)}:{node.lineno} {node.name}()")
    assert not too_long, too_long
