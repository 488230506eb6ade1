"""Benchmarks, one script each: ``python bench/<name>.py`` runs the same as ``python -m bench.<name>``."""

from __future__ import annotations

import os
import sys


def run_as_module(name: str) -> None:
    """Replace this process with ``python -P -m <name>``, keeping the interpreter's options and arguments.

    A script run by path has its own folder first on ``sys.path`` (bench/, where ``import bench``
    and the project's packages are not found, and where a script named like a stage package would
    hide it: no bench script is, ``tests/test_architecture.py`` checks). Run as a module of the
    installed package (``pip install -e .``, done by ``make``), with ``-P`` adding no folder, every
    import finds this checkout's packages, from any folder.
    """
    options = sys.orig_argv[1 : len(sys.orig_argv) - len(sys.argv)]
    os.execv(sys.executable, [sys.executable, *options, "-P", "-m", name, *sys.argv[1:]])
