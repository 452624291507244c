"""The ``regulator`` command: a dispatcher for the subcommands installed packages publish.

Each subcommand is a ``Command`` published under the entry-point group ``regulator.commands``
(``train``, ``plot``, ``controllers`` and ``config`` by ``trainer``; ``bench`` and ``tune`` by
``envs``), so this module imports neither package. A command's module is imported only when it
runs.

Exit codes: 0 success, 2 bad config or arguments (one line naming the key), 1 failure during
a run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from regulator.errors import ConfigError
from regulator.registries import Registry

EXIT_OK, EXIT_FAILURE, EXIT_BAD_CONFIG = 0, 1, 2


@dataclass(frozen=True)
class Command:
    """One subcommand: ``add_arguments(parser)`` declares its arguments, ``run(args)`` returns
    the exit code (a ConfigError it raises becomes exit 2 with one line)."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: Registry[Command] = Registry(
    "regulator commands", group="regulator.commands",
    check=lambda obj: "" if isinstance(obj, Command) else "a regulator.cli.Command")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own exit code is 2 already; keep it one line
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_CONFIG, f"regulator: error: {message}\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("entropy-regulator")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree without install
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The parser with every installed subcommand."""
    p = _Parser(prog="regulator", description="Adaptive entropy regulation for RLVR.")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, command in COMMANDS.load_all().items():
        command.add_arguments(sub.add_parser(name, help=command.help))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS.get(args.command, "command").run(args)
    except ConfigError as e:
        print(f"regulator {args.command}: config error: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except OSError as e:  # the machine, not the config: a full disk, a permission
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"regulator {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"regulator {args.command}: interrupted", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover - `python -m regulator.cli`: use the imported module's
    from regulator.cli import main as _main  # Command class, which the entry points name

    sys.exit(_main())
