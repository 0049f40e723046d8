"""The epoch loop V and M share: resume, early stopping, the plateau schedule, full-state checkpoints.

trainvae.py and trainmdrnn.py each write their epoch (batches, loss) and hand it to :func:`train_epochs`,
which does the rest the same way for both: resume from ``<stage>/checkpoint.tar`` (model, optimizer,
scheduler, early stopping, random streams, step count, history) unless ``--noreload``, ``args.json``,
``checkpoint.tar`` every epoch and ``best.tar`` on a new best test loss, TensorBoard scalars
(``train/*``, ``test/*``), one summary line per epoch, and the writer closed however the run ends.
Flags with the same name mean the same in both: ``--epochs`` (the last epoch, counted over resumes),
``--patience``, ``--lr-patience``, ``--max-batches`` (cap on train and test batches per epoch).
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiment.logdir import BEST, CHECKPOINT, check_stage
from utils.checkpoint import load_checkpoint, remove_stale_temporaries, save_checkpoint
from utils.cli import UserError, nonnegative_int, positive_float, positive_int
from utils.device import add_device_flag
from utils.logging import args_record, make_writer, save_args


class EarlyStopping:
    """Stop after ``patience`` epochs without a new best (lower) test loss."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best = math.inf
        self.bad_epochs = 0

    def step(self, loss: float) -> bool:
        """Record an epoch's test loss; True when it is a new best."""
        if loss < self.best:
            self.best, self.bad_epochs = loss, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def stop(self) -> bool:
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"patience": self.patience, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]


def plateau_scheduler(
    optimizer: torch.optim.Optimizer, patience: int = 5, factor: float = 0.5
) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    """Halve the learning rate after ``patience`` epochs without improvement of the test loss."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=factor, patience=patience)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch random states, saved so a resumed run continues the same streams; as
    plain values and tensors, so that checkpoints load weights-only."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = {"kind": kind, "keys": keys.tolist(), "pos": pos, "has_gauss": has_gauss, "cached": cached}
    return {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], np.asarray(n["keys"], np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])


def training_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    early: EarlyStopping,
    epoch: int,
    **extra: Any,
) -> dict[str, Any]:
    """The full checkpoint of an epoch: everything :func:`resume` restores, plus ``extra`` keys."""
    return {
        "model": model.state_dict(),
        "model_config": model.config,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "early_stopping": early.state_dict(),
        "epoch": epoch,
        "best_loss": early.best,
        "rng": rng_state(),
        **extra,
    }


def restore(
    ckpt: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    early: EarlyStopping,
) -> int:
    """Load a :func:`training_state` checkpoint into the live objects; returns the epoch to run next.

    The optimizer's state (learning rate included) comes from the checkpoint; the early-stopping
    patience stays the one given now, so it can be changed on resume.
    """
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    early.load_state_dict(ckpt["early_stopping"])
    if "rng" in ckpt:
        set_rng_state(ckpt["rng"])
    return ckpt["epoch"] + 1


def add_training_flags(
    parser: argparse.ArgumentParser, epochs: int, batch_size: int, batch_unit: str, lr: float
) -> None:
    """The flags V and M share, with one meaning each; the defaults are the stage's."""
    parser.add_argument("--logdir", type=Path, default=Path("exp_dir"), help="experiment directory")
    parser.add_argument("--noreload", action="store_true", help="start fresh instead of resuming")
    parser.add_argument(
        "--epochs", type=positive_int, default=epochs, help="last epoch to train (counted over resumes)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=batch_size, help=f"{batch_unit} per batch")
    parser.add_argument("--lr", type=positive_float, default=lr, help="Adam learning rate of a fresh run")
    parser.add_argument(
        "--patience", type=positive_int, default=10, help="epochs without improvement before stopping early"
    )
    parser.add_argument(
        "--lr-patience",
        type=nonnegative_int,
        default=5,
        help="epochs without improvement before halving the lr",
    )
    parser.add_argument(
        "--max-batches",
        type=positive_int,
        default=None,
        help="cap on train and test batches per epoch, for smoke runs; None: whole epochs",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, batches and sampling")
    add_device_flag(parser, "auto", "the model's training (auto: the first GPU if there is one)")
    parser.add_argument("--nosamples", action="store_true", help="write no pictures")


def resume_checkpoint(directory: Path, noreload: bool) -> dict[str, Any] | None:
    """The ``checkpoint.tar`` of a stage directory (named after its stage) to resume from, or None (none
    there, or --noreload)."""
    path = directory / CHECKPOINT
    if noreload or not path.is_file():
        return None
    return check_stage(load_checkpoint(path, hint="delete it or rerun with --noreload"), directory.name, path)


def check_resumed_model(state: dict[str, Any], requested: dict[str, int | None], path: Path) -> None:
    """A resumed run goes on with its checkpoint's model: a size flag (``requested``: name -> value, None
    when not given) asking for another size is one line, instead of being ignored."""
    for name, value in requested.items():
        held = state["model_config"].get(name)
        if value is not None and held != value:
            raise UserError(
                f"{path} is a model with --{name} {held}, not {value}: drop the flag to resume it, or use "
                f"another --logdir or --noreload"
            )


# (epoch, optimizer steps so far, writer) -> (train means, test means, optimizer steps after the epoch);
# both dicts hold "loss" (the test loss ranks checkpoints) and any other terms to log.
EpochFn = Callable[[int, int, Any], tuple[dict[str, float], dict[str, float], int]]


def train_epochs(
    directory: Path,
    args: argparse.Namespace,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    early: EarlyStopping,
    resumed: dict[str, Any] | None,
    run_epoch: EpochFn,
    extra: dict[str, Any],
    after_epoch: Callable[[int, Any], None] | None = None,
) -> list[dict[str, float]]:
    """Train up to ``args.epochs`` epochs, resuming from ``resumed``; returns the whole history.

    ``extra`` goes into every checkpoint beside the training state (what later stages need, e.g. V's
    data record or M's vae_id); ``after_epoch(epoch, writer)`` draws pictures. ``args`` needs ``epochs``
    and ``lr_patience``.
    """
    epoch, step, history = 0, 0, []
    if resumed is not None:
        epoch = restore(resumed, model, optimizer, scheduler, early) - 1
        scheduler.patience = args.lr_patience  # the learning rate itself comes from the checkpoint
        step, history = resumed.get("step", 0), list(resumed.get("history", []))
        print(f"resuming {directory / CHECKPOINT}: {epoch} epochs done, best test loss {early.best:.4f}")
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(directory)
    save_args(args, directory)
    writer = make_writer(directory)
    try:
        if epoch >= args.epochs:
            print(f"{directory / CHECKPOINT} has done {epoch} epochs already; raise --epochs to train more")
        while epoch < args.epochs:
            if early.stop:
                print(
                    f"stopped early: no improvement for {early.bad_epochs} epochs "
                    f"(--patience {early.patience})"
                )
                break
            epoch += 1
            start = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            train, test, step = run_epoch(epoch, step, writer)
            scheduler.step(test["loss"])
            improved = early.step(test["loss"])
            record = {"epoch": epoch, "lr": lr, "seconds": time.perf_counter() - start}
            record.update({f"train_{k}": v for k, v in train.items()})
            record.update({f"test_{k}": v for k, v in test.items()})
            history.append(record)
            state = training_state(
                model, optimizer, scheduler, early, epoch, stage=directory.name, step=step,
                test_loss=test["loss"], history=history, args=args_record(args), **extra,
            )  # fmt: skip
            # best.tar first: a run killed between the two writes redoes this epoch and rewrites both.
            if improved:
                save_checkpoint(state, directory / BEST)
            save_checkpoint(state, directory / CHECKPOINT)
            for part, values in (("train", train), ("test", test)):
                for k, v in values.items():
                    writer.add_scalar(f"{part}/{k}", v, epoch)
            writer.add_scalar("train/lr", lr, epoch)
            if after_epoch is not None:
                after_epoch(epoch, writer)
            writer.flush()
            terms = lambda d: " ".join(f"{k} {v:.4g}" for k, v in d.items() if k != "loss")  # noqa: E731
            print(
                f"epoch {epoch:3d}/{args.epochs} | train {train['loss']:.4f} ({terms(train)}) | "
                f"test {test['loss']:.4f} ({terms(test)}) | lr {lr:.1e} | {record['seconds']:.1f} s"
                + (" | best" if improved else ""),
                flush=True,
            )
    finally:
        writer.close()
    return history
