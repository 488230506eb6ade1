"""Benchmarks, one script each: ``python bench/<name>.py`` runs the same as ``python -m bench.<name>``."""

from __future__ import annotations

import os
import sys


def run_as_module(name: str) -> None:
    """Replace this process with ``python -P -m <name>``, keeping the interpreter's options and arguments.

    A script run by path has its own folder first on ``sys.path``: for ``python bench/gpu.py`` that
    is bench/, whose detect.py, pretrain.py and shards.py would hide the stage packages of the same
    names. Run as a module of the installed package (``pip install -e .``, done by ``make``), with
    ``-P`` adding no folder, every import finds this checkout's packages, from any folder.
    """
    options = sys.orig_argv[1 : len(sys.orig_argv) - len(sys.argv)]
    os.execv(sys.executable, [sys.executable, *options, "-P", "-m", name, *sys.argv[1:]])
