"""Command-line plumbing shared by the stage scripts: user errors, argument types, the entry point."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path


class UserError(Exception):
    """A mistake the user can fix (bad flag, missing checkpoint, corrupt file).

    Scripts print it as one line, without a traceback, and exit with status 2.
    """


def _checked(convert: Callable[[str], float], valid: Callable[[float], bool], what: str):
    """An argparse type: ``convert`` the text, then reject values failing ``valid`` with ``what``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not valid(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


positive_int = _checked(int, lambda v: v >= 1, "a positive integer")
nonnegative_int = _checked(int, lambda v: v >= 0, "a non-negative integer")
positive_float = _checked(float, lambda v: v > 0, "a positive number")
nonnegative_float = _checked(float, lambda v: v >= 0, "a non-negative number")
fraction = _checked(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")


def animation_file(text: str) -> Path:
    """An argparse type: a .gif or .mp4 file to write (checked before any work, not after it)."""
    path = Path(text)
    if path.suffix.lower() not in (".gif", ".mp4"):
        raise argparse.ArgumentTypeError(f"expected a .gif or .mp4 file name, got {text!r}")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory: name a .gif or .mp4 file")
    return path


def add_workers_flag(parser: argparse.ArgumentParser, name: str, what: str) -> None:
    """How many workers a stage runs at once, one definition for every script: ``--workers``, and ``name``
    where the stage has always spelt it so (--threads for rollouts, --max-workers for driving), with the
    same check, default (one per core) and help; ``what`` says what the workers are."""
    names = [name, "--workers"] if name != "--workers" else [name]
    parser.add_argument(
        *names,
        type=positive_int,
        default=os.cpu_count() or 1,
        metavar="N",
        help=f"how many {what} run at once, one per core by default",
    )


def add_max_steps_flag(parser: argparse.ArgumentParser) -> None:
    """``--max-steps``, one definition for every script: an episode's length cap, whether the episode is
    a generated rollout or one that a controller drives."""
    parser.add_argument(
        "--max-steps",
        type=positive_int,
        default=None,
        help="episode length cap: a generated rollout or a driven episode that the game has not ended "
        "by then stops there (default: the env's, 1000 for CarRacing); small values make smoke runs",
    )


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Flag help with defaults; the description (the script's docstring) keeps its line breaks."""


def make_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser whose description is the script's docstring and whose help shows defaults."""
    return argparse.ArgumentParser(description=doc, formatter_class=_HelpFormatter)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cluster scheduler, ``kill``), raised in the main thread like Ctrl-C, so that every
    ``finally`` runs: worker pools stop, writers close, and what was saved stays saved."""


_stopped_by: list[int] = []  # the signal that stopped the run, once one has


def _stop(signum: int, frame: object) -> None:
    """The first Ctrl-C or SIGTERM stops the run; later ones are ignored while it cleans up (a few
    seconds: worker pools have deadlines), so that pressing Ctrl-C again cannot cut the cleanup short
    and leave the process waiting at exit for workers that were never stopped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _stopped_by.append(signum)
    check_stop()


def check_stop() -> None:
    """Raise the stop again if a stop signal came but its exception never reached :func:`run`.

    The handler raises wherever the main thread is. A bare ``except:`` in a library (cma has several,
    in code run every generation) or a finaliser can swallow that exception, and the run would go on
    for good, deaf to later signals. The long loops (episode pools, generations, rollouts, batches) call
    this between units of work, never in cleanup, so such a stop lands a second or so later instead.
    """
    if _stopped_by:
        raise Terminated if _stopped_by[0] == signal.SIGTERM else KeyboardInterrupt


def run(
    main: Callable[[argparse.Namespace], object],
    parser: argparse.ArgumentParser,
    argv: list[str] | None = None,
) -> None:
    """Parse ``argv`` and call ``main``; a :class:`UserError` becomes one line on stderr and exit 2.

    Ctrl-C and SIGTERM stop the run within seconds with one line (more of them while it stops are
    ignored): every stage writes its state atomically after each unit of work (rollout, epoch,
    generation), so rerunning the same command resumes from the last one completed.
    """
    args = parser.parse_args(argv)
    stops = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not a job started with SIGINT ignored
        stops.append(signal.SIGINT)
    _stopped_by.clear()
    previous = {signum: signal.signal(signum, _stop) for signum in stops}
    stopped = False
    try:
        main(args)
    except UserError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as stop:
        stopped = True
        terminated = isinstance(stop, Terminated)
        print(
            f"{parser.prog}: stopped by {'SIGTERM' if terminated else 'Ctrl-C'}; everything completed is "
            f"saved: rerun the same command to resume",
            file=sys.stderr,
        )
        sys.exit(143 if terminated else 130)
    finally:
        # A stopped run is exiting: later signals stay ignored (_stop) until it is gone, or one arriving
        # while the interpreter shuts down would kill it with the default handler instead (exit -15).
        if not stopped:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def run_stage(argv: list[str | os.PathLike], failed: str) -> None:
    """Run a stage script of this project, ``argv[0]`` (its path from the repository root, such as
    ``trainvae.py`` or ``data/generation_script.py``), with ``argv[1:]``, in this process: what
    ``python ARGV`` does, without a new interpreter that spends seconds importing torch, and with this
    process's worker server (:func:`utils.processes.worker_context`) serving every stage.

    The stage prints its own errors and stop line as it would alone; a stage that fails raises
    :class:`UserError` with ``failed``, and a stopped one ends this process with its exit status.
    Settings a stage leaves behind in the process (torch's thread count) are restored after it.
    """
    import gc
    import importlib

    import torch

    script, *rest = map(str, argv)
    module = importlib.import_module(script.removesuffix(".py").replace("/", "."))
    parser = module.build_parser()
    parser.prog = Path(script).name
    threads = torch.get_num_threads()
    try:
        run(module.main, parser, rest)
    except SystemExit as exit_:
        if exit_.code in (130, 143):  # stopped by Ctrl-C or SIGTERM: the stage said so, the run ends
            raise
        if exit_.code not in (0, None):
            raise UserError(failed) from None
    finally:
        torch.set_num_threads(threads)
        gc.collect()
