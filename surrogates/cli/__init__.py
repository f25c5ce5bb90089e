"""The ``surrogates`` command line.

Each subcommand is a module of this package with ``add_parser(subparsers)`` and
``run(args) -> int``;
modules import their heavy dependencies inside ``run`` so that ``surrogates --help`` stays fast.
A user mistake prints one line on stderr and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from simulators.errors import UserError

__all__ = ["build_parser", "main"]

COMMANDS = ("demo", "simulate", "info", "train", "sample", "evaluate", "score")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


#: library messages name keyword arguments; on the command line they are these flags
_FLAGS = {"overwrite=True": "--overwrite", "resume=True": "--resume",
          "drop_nonfinite=True": "--drop-nonfinite"}  # fmt: skip


def _as_flags(message: str) -> str:
    for keyword, flag in _FLAGS.items():
        message = message.replace(keyword, flag)
    return message


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="surrogates",
        description="Simulate datasets, train fast surrogates, sample and evaluate them.",
    )
    from surrogates import __version__

    parser.add_argument("--version", action="version", version=f"simsurrogates {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"surrogates.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"surrogates.cli.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UserError as exc:  # every user-input error derives from it
        print(f"surrogates {args.command}: error: {_as_flags(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"surrogates {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
