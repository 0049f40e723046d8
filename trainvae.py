"""Train V, the convolutional VAE, on the frames of the rollouts.

Usage:
    python trainvae.py --logdir exp_dir --dataset datasets/carracing
    python trainvae.py --logdir /tmp/smoke --dataset /tmp/rollouts --epochs 1 --max-batches 5   # smoke run

Writes <logdir>/vae/: checkpoint.tar (every epoch), best.tar (when the test loss improves), args.json,
TensorBoard events and samples/*.png. Rerunning with the same --logdir resumes at the next epoch with
the optimizer, scheduler and early-stopping state; --noreload starts over. Frames are decoded once
into a memory-mapped cache under <dataset>/.cache (see data/frames.py). The train/test split is by
rollout (data/rollouts.split_rollouts), the same for every stage.

Defaults are the paper's: Adam at lr 1e-4, batch 100, KL floor 0.5 nats per latent dimension.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from tqdm import tqdm

from data.frames import FrameCache
from data.rollouts import DEFAULT_TEST_FRACTION
from models.vae import VAE, frames_to_tensor, vae_dir, vae_loss
from utils.checkpoint import load_checkpoint, remove_stale_temporaries, save_checkpoint
from utils.cli import (
    UserError,
    fraction,
    make_parser,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    run,
)
from utils.device import resolve_device
from utils.logging import make_writer, save_args
from utils.precision import MEMORY_FORMATS, PRECISIONS, resolve_numerics
from utils.seeding import derive_seed, seed_everything
from utils.training import EarlyStopping, plateau_scheduler, restore, training_state
from utils.visuals import image_grid, save_png, to_uint8

# Tags separating the random streams derived from --seed.
_SHUFFLE, _TRAIN_NOISE, _TEST_NOISE, _PRIOR = 1, 2, 3, 4
N_SAMPLES = 8  # test frames shown beside their reconstructions; the prior grid is N_SAMPLES^2


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--logdir", type=Path, default=Path("exp_dir"), help="experiment directory")
    parser.add_argument("--noreload", action="store_true", help="start fresh instead of resuming")
    parser.add_argument(
        "--dataset",
        type=Path,
        default=Path("datasets/carracing"),
        help="rollout directory (searched recursively)",
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=10, help="last epoch to train (counted over resumes)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=100, help="frames per batch")
    parser.add_argument("--lr", type=positive_float, default=1e-4, help="Adam learning rate of a fresh run")
    parser.add_argument("--latent", type=positive_int, default=32, help="latent size of a fresh model")
    parser.add_argument(
        "--kl-tolerance",
        type=nonnegative_float,
        default=0.5,
        help="KL floor in nats per latent dimension (free bits); 0 gives the plain ELBO",
    )
    parser.add_argument(
        "--lr-patience",
        type=nonnegative_int,
        default=5,
        help="epochs without improvement before halving the lr",
    )
    parser.add_argument(
        "--patience", type=positive_int, default=10, help="epochs without improvement before stopping early"
    )
    parser.add_argument(
        "--test-fraction", type=fraction, default=DEFAULT_TEST_FRACTION, help="share of rollouts held out"
    )
    parser.add_argument(
        "--max-batches",
        type=positive_int,
        default=None,
        help="cap on train and test batches per epoch, for smoke runs; None: whole epochs",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and sampling")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: bf16 autocast where the hardware has native bf16, else fp32",
    )
    parser.add_argument(
        "--memory-format",
        choices=MEMORY_FORMATS,
        default="auto",
        help="auto: channels_last on CPU, and on CUDA with bf16",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=2,
        help="threads decompressing rollouts when building the cache",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="frame cache directory (default: <dataset>/.cache)"
    )
    parser.add_argument(
        "--skip-bad-files",
        action="store_true",
        help="leave out corrupt or mismatched rollout files with a warning instead of stopping",
    )
    parser.add_argument("--nosamples", action="store_true", help="write no image grids")
    return parser


def run_epoch(
    vae, cache, indices, args, numerics, device, optimizer=None, rng=None, writer=None, step=0, desc=""
):
    """One pass over ``frames[indices]``; trains when ``optimizer`` is given; returns means and frames/s."""
    training = optimizer is not None
    vae.train(training)
    batches = cache.batches(indices, args.batch_size, rng=rng, max_batches=args.max_batches)
    n_batches = -(-len(indices) // args.batch_size)
    if args.max_batches is not None:
        n_batches = min(n_batches, args.max_batches)
    totals, n_frames, start = np.zeros(3), 0, time.perf_counter()
    bar = tqdm(batches, total=n_batches, desc=desc, unit="batch", leave=False, dynamic_ncols=True)
    for frames in bar:
        x = frames_to_tensor(frames, device).contiguous(memory_format=numerics.memory_format)
        with torch.set_grad_enabled(training):
            with numerics.autocast():
                recon, mu, logsigma = vae(x)
            loss, recon_loss, kl = vae_loss(recon, x, mu, logsigma, args.kl_tolerance)
        if training:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if writer is not None and step % 50 == 0:
                writer.add_scalar("train/batch_loss", loss.item(), step)
        b = x.shape[0]
        totals += b * torch.stack([loss, recon_loss, kl]).detach().double().cpu().numpy()
        n_frames += b
        fps = n_frames / (time.perf_counter() - start)
        bar.set_postfix(loss=f"{totals[0] / n_frames:.1f}", frames_per_s=f"{fps:.0f}", refresh=False)
    bar.close()
    loss, recon_loss, kl = (totals / max(n_frames, 1)).tolist()
    return {"loss": loss, "recon": recon_loss, "kl": kl, "frames_per_s": fps if n_frames else 0.0}, step


@torch.no_grad()
def write_samples(vae, cache, test_idx, args, device, epoch, writer, out):
    """PNG grids: test frames above their reconstructions (from mu), and decodes of prior samples."""
    vae.eval()
    pick = test_idx[np.linspace(0, len(test_idx) - 1, N_SAMPLES).astype(np.int64)]
    x = frames_to_tensor(cache.frames[pick], device)
    real_recon = torch.cat([x, vae.decode(vae.encode(x)[0])])
    z = torch.randn(
        N_SAMPLES**2, vae.latent, generator=torch.Generator().manual_seed(derive_seed(args.seed, _PRIOR))
    )
    prior = vae.decode(z.to(device))
    for name, images in (("reconstruction", real_recon), ("prior", prior)):
        grid = image_grid(to_uint8(images), ncols=N_SAMPLES)
        save_png(grid, out / "samples" / f"{name}_epoch{epoch:03d}.png")
        writer.add_image(f"samples/{name}", grid, epoch, dataformats="HWC")


def main(args) -> list[dict]:
    """Train, resuming from ``<logdir>/vae/checkpoint.tar`` unless --noreload; returns the history."""
    device = resolve_device(args.device)
    numerics = resolve_numerics(args.precision, args.memory_format, device)
    out = vae_dir(args.logdir)
    cache = FrameCache.open(args.dataset, args.cache_dir, args.skip_bad_files, args.workers)
    train_idx, test_idx = cache.split(args.test_fraction)
    if len(train_idx) == 0:
        raise UserError(
            f"{args.dataset}: no training rollouts after the split; lower --test-fraction or add rollouts"
        )
    if len(test_idx) == 0:
        print("no test rollouts (too few files or --test-fraction 0): best.tar is chosen on the train loss")
    n_rollouts = len(cache.files)
    print(
        f"{len(train_idx)} train / {len(test_idx)} test frames from {n_rollouts} rollouts "
        f"({cache.preprocessing}); {device}, {numerics}"
    )

    checkpoint_path = out / "checkpoint.tar"
    state = None
    if checkpoint_path.exists() and not args.noreload:
        state = load_checkpoint(checkpoint_path, hint="delete it or rerun with --noreload")
        if state["preprocessing"] != cache.preprocessing:
            raise UserError(
                f"{checkpoint_path} was trained on {state['preprocessing']!r} frames but "
                f"{args.dataset} holds {cache.preprocessing!r} frames; use another --logdir or --noreload"
            )
        if state["model_config"] != {"latent": args.latent}:
            print(
                f"resuming the checkpoint's model {state['model_config']}; --latent {args.latent} is ignored"
            )

    seed_everything(args.seed)
    vae = VAE.from_config(state["model_config"]) if state else VAE(args.latent)
    vae.to(device=device, memory_format=numerics.memory_format)
    optimizer = torch.optim.Adam(vae.parameters(), lr=args.lr)
    scheduler = plateau_scheduler(optimizer, args.lr_patience)
    early = EarlyStopping(args.patience)
    epoch, step, history = 0, 0, []
    if state:
        epoch = (
            restore(state, vae, optimizer, scheduler, early) - 1
        )  # lr included: --lr only sets a fresh run's
        scheduler.patience = args.lr_patience
        step, history = state["step"], state["history"]
        print(f"resuming from {checkpoint_path}: epoch {epoch} done, best loss {early.best:.2f}")

    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    save_args(args, out)
    writer = make_writer(out)
    try:
        while epoch < args.epochs:
            if early.stop:
                print(
                    f"stopped early: no improvement for {early.bad_epochs} epochs "
                    f"(--patience {args.patience})"
                )
                break
            epoch += 1
            start = time.perf_counter()
            torch.manual_seed(derive_seed(args.seed, _TRAIN_NOISE, epoch))
            rng = np.random.default_rng(derive_seed(args.seed, _SHUFFLE, epoch))
            train, step = run_epoch(
                vae,
                cache,
                train_idx,
                args,
                numerics,
                device,
                optimizer,
                rng,
                writer,
                step,
                f"epoch {epoch} train",
            )
            torch.manual_seed(derive_seed(args.seed, _TEST_NOISE))  # the same noise every epoch
            if len(test_idx):
                test, _ = run_epoch(vae, cache, test_idx, args, numerics, device, desc=f"epoch {epoch} test")
            else:
                test = train
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step(test["loss"])
            improved = early.step(test["loss"])
            record = {"epoch": epoch, "lr": lr, "seconds": time.perf_counter() - start}
            record.update({f"train_{k}": v for k, v in train.items()})
            record.update({f"test_{k}": v for k, v in test.items() if k != "frames_per_s"})
            history.append(record)
            state = training_state(
                vae,
                optimizer,
                scheduler,
                early,
                epoch,
                step=step,
                test_loss=test["loss"],
                preprocessing=cache.preprocessing,
                args=vars(args),
                history=history,
            )
            # best.tar first: a run killed between the two writes redoes this epoch and rewrites both.
            if improved:
                save_checkpoint(state, out / "best.tar")
            save_checkpoint(state, checkpoint_path)

            for part in ("loss", "recon", "kl"):
                writer.add_scalar(f"train/{part}", train[part], epoch)
                writer.add_scalar(f"test/{part}", test[part], epoch)
            writer.add_scalar("train/lr", lr, epoch)
            writer.add_scalar("train/frames_per_s", train["frames_per_s"], epoch)
            if not args.nosamples:
                write_samples(
                    vae, cache, test_idx if len(test_idx) else train_idx, args, device, epoch, writer, out
                )
            writer.flush()
            print(
                f"epoch {epoch:3d}/{args.epochs}  train {train['loss']:8.2f} (recon {train['recon']:8.2f}, "
                f"kl {train['kl']:6.2f})  test {test['loss']:8.2f} (recon {test['recon']:8.2f}, "
                f"kl {test['kl']:6.2f})  lr {lr:.1e}  {train['frames_per_s']:.0f} frames/s"
                + ("  *best" if improved else "")
            )
    finally:
        writer.close()
    return history


if __name__ == "__main__":
    run(main, build_parser())
