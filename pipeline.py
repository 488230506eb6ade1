#!/usr/bin/env python
"""LUPerson pipeline: rebuild the LUPerson dataset and pre-train Re-ID backbones on it.

Argument parsing and stage chaining only; each subcommand calls one function of its stage
package, ``fn(settings, root) -> summary dict`` (the registry: ``stages.py``). Heavy libraries
are imported by the stages, so ``python pipeline.py --help`` is instant.

    python pipeline.py crawl --cities configs/top100.txt
    python pipeline.py build-shards
    python pipeline.py pretrain --gpus 8
    python pipeline.py demo
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from common.errors import UsageError
from common.log import setup_logging
from common.settings import add_settings_flags
from common.summary import print_summary
from common.workspace import is_lock_holder
from demo import demo
from shards.settings import IMPORTER_FIELDS
from stages import (  # noqa: F401  (re-exported: benchmarks and tests run stages through pipeline)
    CHAINED_BEFORE,
    COMMANDS,
    chained_settings,
    load_attr,
    resolve,
    run_stage,
    settings_file,
    stage_settings,
    workspace,
)

DEFAULT_ROOT = Path("luperson_data")


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, systemd, Slurm, Kubernetes), raised in the main thread like Ctrl-C's
    ``KeyboardInterrupt``, so the same clean-up runs (a stage's pool stops its workers)."""


def _raise_terminated(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the command runs, SIGTERM raises ``Terminated`` (only the main thread can take it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="pipeline.py",
        description="Rebuild LUPerson from street-view videos and pre-train Re-ID backbones on it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        p.add_argument(
            "--root",
            default=None,
            help=f"workspace folder (default: {DEFAULT_ROOT}, for demo {DEFAULT_ROOT / 'demo'})",
        )
        p.add_argument("--config", default=None, help="YAML file with one section per stage (configs/)")
        p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        add_settings_flags(p, load_attr(cmd.settings))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    reserved = {"command", "root", "config", "verbose"}
    flags = {k: v for k, v in vars(args).items() if k not in reserved}
    try:
        with sigterm_as_interrupt():
            settings = resolve(args.command, args.config, flags)
            root = Path(args.root) if args.root else DEFAULT_ROOT / ("demo" if args.command == "demo" else "")
            with workspace(args.command, settings, root):
                if args.command == "demo":
                    demo(settings, root, args.config)
                    return 0
                if not any(getattr(settings, name, None) for name in IMPORTER_FIELDS):
                    for before in CHAINED_BEFORE.get(args.command, ()):
                        run_stage(before, chained_settings(before, settings, args.config, root), root)
                runs = stage_settings(args.command, settings, args.config, root)
                summary = run_stage(args.command, settings, root, runs)
    except UsageError as e:
        print(f"pipeline.py {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Terminated:
        print(
            f"pipeline.py {args.command}: terminated (SIGTERM); rerun the same command to resume",
            file=sys.stderr,
        )
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"pipeline.py {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    if is_lock_holder():  # under an external torchrun every rank returns here
        print_summary({args.command: summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
