"""The project as an installed package: ``pip install -e .`` (``make``) makes every import work.

No script edits ``sys.path``: the editable install finds this checkout's packages from any folder,
for ``pipeline.py``, the ``luperson`` script, ``bench/*.py``, ``configs/*.py`` and the tests.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from conftest import REPO

import pipeline

DIST = "luperson-pipeline"


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_luperson_script_is_pipeline_py(tmp_path):
    """``luperson --help`` from any folder prints exactly what ``python pipeline.py --help`` does."""
    script = Path(sys.executable).parent / "luperson"
    assert script.exists(), f"no {script}: run `make` (or pip install -e .)"
    installed = run([str(script), "--help"], cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    for name in pipeline.COMMANDS:
        assert f"    {name}" in installed.stdout, name
    direct = run([sys.executable, "pipeline.py", "--help"], cwd=REPO)
    assert direct.returncode == 0, direct.stderr
    assert installed.stdout == direct.stdout


def test_luperson_exit_status_is_mains(tmp_path):
    """The script's exit status is ``main``'s return code: 2 for a usage error, with its one line."""
    script = Path(sys.executable).parent / "luperson"
    result = run([str(script), "stats", "--config", str(tmp_path / "none.yaml")], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"pipeline.py stats: error: config file {tmp_path / 'none.yaml'} does not exist"
    ]


def test_install_is_editable_on_this_checkout(tmp_path):
    """The environment's distribution is the editable one on this checkout (PEP 610), with the script.

    Read from another folder: run from the checkout, a stray luperson_pipeline.egg-info that an
    isolated build leaves there would answer instead.
    """
    code = (
        "import importlib.metadata, json\n"
        f"dist = importlib.metadata.distribution({DIST!r})\n"
        "scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == 'console_scripts'}\n"
        "print(json.dumps([json.loads(dist.read_text('direct_url.json') or '{}'), scripts]))\n"
    )
    result = run([sys.executable, "-P", "-c", code], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    direct_url, scripts = json.loads(result.stdout)
    assert direct_url.get("dir_info", {}).get("editable"), f"{DIST} is not an editable install: run make"
    assert Path(unquote(urlparse(direct_url["url"]).path)).resolve() == REPO
    assert scripts == {"luperson": "pipeline:main"}


def top_level_names() -> list[str]:
    """Every importable top level of the checkout: packages (with ``__init__.py``) and root modules."""
    packages = [d.name for d in REPO.iterdir() if (d / "__init__.py").is_file()]
    return sorted(packages + [p.stem for p in REPO.glob("*.py")])


def test_every_top_level_name_imports_from_this_checkout(tmp_path):
    """From another folder, with no folder added to ``sys.path`` (``-P``), each one is found here.

    A new root module or package that is missing from pyproject.toml fails here.
    """
    names = top_level_names()
    assert {"pipeline", "common", "bench"} <= set(names)
    code = "import importlib.util, json, sys; print(json.dumps({n: importlib.util.find_spec(n).origin for n in sys.argv[1:]}))"
    result = run([sys.executable, "-P", "-c", code, *names], cwd=tmp_path)
    assert result.returncode == 0, f"{result.stderr}\nadd it to pyproject.toml and run make"
    origins = json.loads(result.stdout)
    for name in names:
        assert Path(origins[name]).resolve().is_relative_to(REPO), (name, origins[name])


def source_files() -> list[Path]:
    """The .py files git tracks or would add (not ignored): everything that ships with the project."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout: {listed.stderr.strip()}")
    return [REPO / line for line in listed.stdout.splitlines() if (REPO / line).is_file()]


def is_sys_path(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    )


LIST_EDITS = {"insert", "append", "extend", "remove", "pop", "clear", "__setitem__"}


def sys_path_edits(tree: ast.AST) -> list[int]:
    """Lines that change the import path: a list method called on it, or an assignment to it."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in LIST_EDITS and is_sys_path(func.value):
                lines.append(node.lineno)
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            if any(
                is_sys_path(t) or (isinstance(t, ast.Subscript) and is_sys_path(t.value)) for t in targets
            ):
                lines.append(node.lineno)
    return sorted(lines)


def test_sys_path_edits_are_found():
    code = (
        "import sys\nsys.path.insert(0, 'x')\nsys.path[:0] = ['y']\nsys.path += ['z']\nprint(sys.path[0])\n"
    )
    assert sys_path_edits(ast.parse(code)) == [2, 3, 4]


def test_no_file_edits_sys_path():
    files = source_files()
    assert REPO / "pipeline.py" in files and REPO / "tests" / "conftest.py" in files
    edits = [
        f"{path.relative_to(REPO)}:{line}"
        for path in files
        for line in sys_path_edits(ast.parse(path.read_text(), filename=str(path)))
    ]
    assert edits == [], "imports come from the editable install (pyproject.toml), not from sys.path"
