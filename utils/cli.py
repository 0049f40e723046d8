"""Command-line plumbing shared by the stage scripts: user errors, argument types, the entry point."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


class UserError(Exception):
    """A mistake the user can fix (bad flag, missing checkpoint, corrupt file).

    Scripts print it as one line, without a traceback, and exit with status 2.
    """


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def fraction(text: str) -> float:
    """argparse type: a float in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value}")
    return value


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Flag help with defaults; the description (the script's docstring) keeps its line breaks."""


def make_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser whose description is the script's docstring and whose help shows defaults."""
    return argparse.ArgumentParser(description=doc, formatter_class=_HelpFormatter)


def run(
    main: Callable[[argparse.Namespace], object],
    parser: argparse.ArgumentParser,
    argv: list[str] | None = None,
) -> None:
    """Parse ``argv`` and call ``main``; a :class:`UserError` becomes one line on stderr and exit 2."""
    args = parser.parse_args(argv)
    try:
        main(args)
    except UserError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        sys.exit(130)
