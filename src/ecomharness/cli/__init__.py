"""The ``ecomharness`` command: a small dispatcher over one module per subcommand.

Each subcommand module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``. Heavy imports (torch, lm-eval) happen inside ``run`` so that
``--help`` stays instant. A module with ``PASSTHROUGH = True`` receives its raw argument
list instead (``eval`` hands its flags to lm-eval's own parser unchanged).
"""

from __future__ import annotations

from ecomharness.errors import EXIT_INPUT, EXIT_INTERNAL, EXIT_OK

import argparse
import importlib
import sys

from ecomharness import __version__
from ecomharness.errors import UserError
from ecomharness.plugins import PluginError

# Order here is the order in --help.
COMMANDS = ("eval", "score", "data", "contamination", "train", "watch", "average", "report", "gate", "compare",
            "plan", "tasks", "tasks_path", "plugins", "demo")


def _load(name: str):
    return importlib.import_module(f"ecomharness.cli.{name}")


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """Build the top-level parser; returns it and a map of command name -> module."""
    parser = argparse.ArgumentParser(
        prog="ecomharness",
        description="Evaluation-first harness for domain continual pre-training, on lm-eval.",
    )
    parser.add_argument("--version", action="version", version=f"ecomharness {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name in COMMANDS:
        module = _load(name)
        modules[module.NAME] = module
        if getattr(module, "PASSTHROUGH", False):
            sub.add_parser(module.NAME, help=module.HELP, add_help=False)
            continue
        cmd = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.__doc__.strip().splitlines()[0],
            epilog=getattr(module, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(cmd)
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ecomharness`` console script. Returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, modules = build_parser()
    # The DeepSpeed launcher appends --local_rank=N to every command it starts.
    argv = [a for a in argv if not a.startswith("--local_rank")]
    command = argv[0] if argv else None
    try:
        if command in modules and getattr(modules[command], "PASSTHROUGH", False):
            return int(modules[command].run_argv(argv[1:]) or EXIT_OK)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_INPUT
        return int(modules[args.command].run(args) or EXIT_OK)
    except (UserError, PluginError) as exc:
        print(f"ecomharness {command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:  # noqa: BLE001 - a crash must not read as a failed gate (1)
        where = _save_traceback()
        print(f"ecomharness {command}: internal error: {type(exc).__name__}: {exc}"
              f" (full traceback: {where})", file=sys.stderr)
        return EXIT_INTERNAL



def _save_traceback() -> str:
    """Write the current exception's traceback to a file and return its path (or say
    why it could not be written: the summary line must still come out)."""
    import os
    import tempfile
    import time
    import traceback

    from ecomharness.util import cache_root

    text = traceback.format_exc()
    directory = cache_root() / "crashes"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=time.strftime("crash-%Y%m%d-%H%M%S-"), suffix=".txt", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        return path
    except OSError as exc:
        sys.stderr.write(text)
        return f"printed above ({directory} not writable: {exc})"


if __name__ == "__main__":
    sys.exit(main())
