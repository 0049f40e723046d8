"""Train M, the mixture-density LSTM, on rollouts encoded by V.

Usage:
    python trainmdrnn.py --logdir exp_dir

Needs <logdir>/vae/best.tar (trainvae.py). Every rollout is encoded once by V's encoder into
<logdir>/mdrnn/latents.npz (rebuilt when the rollouts or the VAE change); batches then draw
z = mu + sigma * eps afresh. Writes <logdir>/mdrnn/checkpoint.tar every epoch and best.tar when the
test loss improves, and resumes from checkpoint.tar unless --noreload.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from data.latents import (
    cache_path_for,
    file_digest,
    load_or_build_latents,
    make_batch,
    sequence_windows,
    split_indices,
)
from data.rollouts import list_rollouts, split_rollouts
from models.mdrnn import MDRNN, MDRNNCell, gmm_loss, sample_latent
from models.vae import load_vae, vae_dir
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.cli import UserError, make_parser, nonnegative_int, positive_float, positive_int, run
from utils.device import resolve_device
from utils.logging import make_writer, save_args
from utils.seeding import derive_seed, seed_everything
from utils.training import EarlyStopping, plateau_scheduler, restore, training_state
from utils.visuals import image_grid, label_rows, save_animation, save_png, to_uint8


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--logdir", type=Path, default=Path("exp_dir"), help="experiment directory")
    parser.add_argument("--noreload", action="store_true", help="start fresh instead of resuming")
    parser.add_argument(
        "--dataset",
        type=Path,
        default=None,
        help="rollout directory (default: the one the VAE was trained on)",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=30,
        help="epochs in total (a resumed run counts the epochs already done)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=64, help="sequences per batch")
    parser.add_argument("--seq-len", type=positive_int, default=32, help="steps per training sequence")
    parser.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate (paper: 1e-3)")
    parser.add_argument(
        "--grad-clip", type=float, default=1.0, help="gradient norm clip, 0 for none (paper: 1.0)"
    )
    parser.add_argument("--hidden", type=positive_int, default=256, help="LSTM units (fresh runs only)")
    parser.add_argument("--gaussians", type=positive_int, default=5, help="mixture components per latent dim")
    parser.add_argument(
        "--no-reward",
        action="store_true",
        help="do not train the reward head (dream training then cannot use this M)",
    )
    parser.add_argument("--patience", type=positive_int, default=10, help="early-stopping patience (epochs)")
    parser.add_argument(
        "--lr-patience",
        type=positive_int,
        default=5,
        help="epochs without improvement before the learning rate is halved",
    )
    parser.add_argument(
        "--max-batches",
        type=nonnegative_int,
        default=0,
        help="cap on training batches per epoch, 0 for all (smoke runs)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of batches, z draws and initialisation")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--nosamples", action="store_true", help="skip prediction and dream images")
    parser.add_argument("--temperature", type=float, default=1.0, help="tau of the dreams drawn each epoch")
    return parser


def losses(mdrnn: MDRNN, batch: dict[str, torch.Tensor], reward: bool) -> dict[str, torch.Tensor]:
    """Masked mean losses of a batch; ``loss`` = (gmm + bce + mse) / (latent + 2), each term per step.

    gmm is the negative log-likelihood of z_{t+1} summed over latent dimensions; bce the termination
    cross-entropy (targets are real terminations only: a time-limit cut is never a death); mse the
    reward error. Dividing by latent + 2 puts all three on a per-dimension scale.
    """
    out = mdrnn(batch["actions"], batch["latents"])
    mask = batch["mask"]
    n = mask.sum().clamp(min=1)
    gmm = (gmm_loss(batch["next_latents"], out.mus, out.sigmas, out.logpi, reduce=False) * mask).sum() / n
    bce = (
        F.binary_cross_entropy_with_logits(out.terminations, batch["terminals"], reduction="none") * mask
    ).sum() / n
    mse = ((out.rewards - batch["rewards"]).pow(2) * mask).sum() / n if reward else torch.zeros_like(gmm)
    loss = (gmm + bce + mse) / (mdrnn.latent + 2)
    return {"loss": loss, "gmm": gmm, "bce": bce, "mse": mse}


@torch.no_grad()
def dream_under_actions(
    cell: MDRNNCell,
    z_context: torch.Tensor,
    actions: torch.Tensor,
    temperature: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Feed real latents (C, L) with the first C actions, then roll M out on its own samples.

    actions: (T, 3) with T >= C. Returns (T, L): for step t the z M produced for frame t + 1.
    """
    hidden = cell.initial_hidden(1, z_context.device)
    z = z_context[:1]
    produced = []
    for t in range(actions.shape[0]):
        if t < z_context.shape[0]:
            z = z_context[t : t + 1]
        out = cell(actions[t : t + 1], z, hidden)
        hidden = out.hidden
        z = sample_latent(out.mus, out.sigmas, out.logpi, temperature, generator)
        produced.append(z[0])
    return torch.stack(produced)


@torch.no_grad()
def write_visuals(mdrnn: MDRNN, vae, latents, test_ids: np.ndarray, epoch: int, args, writer, device) -> None:
    """Real next frames beside M's predictions (mode of the mixture), and a dream GIF, for a test rollout."""
    rid = int(test_ids[0]) if len(test_ids) else 0
    f0, s0 = latents.frame_offsets[rid], latents.step_offsets[rid]
    steps = int(min(latents.lengths[rid], 64))
    mu = torch.from_numpy(latents.mu[f0 : f0 + steps + 1]).to(device)
    actions = torch.from_numpy(latents.actions[s0 : s0 + steps]).to(device)
    out = mdrnn(actions[None], mu[None, :-1])
    predicted = sample_latent(out.mus[0], out.sigmas[0], out.logpi[0], temperature=0.0)
    cell = MDRNNCell.from_config(mdrnn.config).to(device)
    cell.load_state_dict(mdrnn.state_dict())
    gen = torch.Generator(device=device).manual_seed(args.seed)
    dreamed = dream_under_actions(cell, mu[: min(8, steps)], actions, args.temperature, gen)
    real_frames = to_uint8(vae.decode(mu[1:]))
    pred_frames, dream_frames = to_uint8(vae.decode(predicted)), to_uint8(vae.decode(dreamed))
    pick = np.linspace(0, steps - 1, num=min(steps, 12)).astype(int)
    strip = image_grid(
        np.concatenate([real_frames[pick], pred_frames[pick], dream_frames[pick]]), ncols=len(pick), scale=2
    )
    strip = label_rows(strip, ["real (V)", "M prediction", f"dream, tau {args.temperature:g}"])
    out_dir = args.logdir / "mdrnn" / "samples"
    save_png(strip, out_dir / f"epoch_{epoch:03d}_predictions.png")
    side_by_side = [
        np.concatenate([a, b], axis=1).repeat(3, 0).repeat(3, 1)
        for a, b in zip(real_frames, dream_frames, strict=True)
    ]
    save_animation(side_by_side, out_dir / f"epoch_{epoch:03d}_dream.gif", fps=15)
    writer.add_image("samples/real_prediction_dream", strip, epoch, dataformats="HWC")


def main(args) -> list[dict[str, float]]:
    """Train M; returns one dict of losses per epoch run."""
    device = resolve_device(args.device)
    seed_everything(args.seed)
    vae, vae_ckpt = load_vae(args.logdir, device)
    vae_args = vae_ckpt.get("args", {})
    rootdir = args.dataset or Path(vae_args.get("dataset", "datasets/carracing"))
    files = list_rollouts(rootdir)
    test_fraction = float(vae_args.get("test_fraction", 0.1))
    _, test_files = split_rollouts(files, test_fraction, rootdir)
    vae_path = vae_dir(args.logdir) / "best.tar"
    latents, rebuilt = load_or_build_latents(
        cache_path_for(args.logdir), files, rootdir, vae, vae_path, vae_ckpt["preprocessing"], device
    )
    print(
        f"latents: {len(latents.names)} rollouts, {len(latents.actions)} steps "
        f"({'encoded now' if rebuilt else 'from cache'})"
    )
    train_ids, test_ids = split_indices(latents, {str(p.relative_to(rootdir)) for p in test_files})
    if len(train_ids) == 0:
        raise UserError(f"{rootdir}: no training rollouts after the train/test split; generate more rollouts")

    out_dir = args.logdir / "mdrnn"
    checkpoint_path = out_dir / "checkpoint.tar"
    vae_id = file_digest(vae_path)
    config = {"latent": vae.latent, "action": 3, "hidden": args.hidden, "gaussians": args.gaussians}
    existing = None
    if checkpoint_path.is_file() and not args.noreload:
        existing = load_checkpoint(checkpoint_path, hint="delete it or rerun with --noreload")
        if existing.get("vae_id") != vae_id:
            raise UserError(
                f"{checkpoint_path} was trained on another VAE than {vae_path}; "
                f"rerun with --noreload to train M afresh on this VAE"
            )
        config = existing["model_config"]
    mdrnn = MDRNN.from_config(config).to(device)
    optimizer = torch.optim.Adam(mdrnn.parameters(), lr=args.lr)
    scheduler = plateau_scheduler(optimizer, args.lr_patience)
    early = EarlyStopping(args.patience)
    start_epoch = 1
    if existing is not None:
        start_epoch = restore(existing, mdrnn, optimizer, scheduler, early)
        scheduler.patience = args.lr_patience
        print(f"resuming {checkpoint_path} at epoch {start_epoch} (best test loss {early.best:.4f})")
    save_args(args, out_dir)
    writer = make_writer(out_dir)
    history = []
    if start_epoch > args.epochs:
        print(f"{checkpoint_path} has done {start_epoch - 1} epochs already; raise --epochs to train more")
    for epoch in range(start_epoch, args.epochs + 1):
        if early.stop:
            print(f"early stopping: no improvement in {early.patience} epochs")
            break
        mdrnn.train()
        # Streams seeded per epoch: a resumed run draws exactly what an uninterrupted one would.
        batch_rng = np.random.default_rng(derive_seed(args.seed, epoch))
        z_gen = torch.Generator().manual_seed(derive_seed(args.seed, epoch, 1))
        windows = sequence_windows(latents, train_ids, args.seq_len, batch_rng)
        windows = windows[batch_rng.permutation(len(windows))]
        n_batches = -(-len(windows) // args.batch_size)
        if args.max_batches:
            n_batches = min(n_batches, args.max_batches)
        totals = {k: 0.0 for k in ("loss", "gmm", "bce", "mse")}
        start = time.perf_counter()
        bar = tqdm(range(n_batches), desc=f"epoch {epoch}", unit="batch", dynamic_ncols=True, leave=False)
        for b in bar:
            batch = make_batch(
                latents, windows[b * args.batch_size : (b + 1) * args.batch_size], args.seq_len, device, z_gen
            )
            terms = losses(mdrnn, batch, reward=not args.no_reward)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            if args.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(mdrnn.parameters(), args.grad_clip)
            optimizer.step()
            for k in totals:
                totals[k] += terms[k].item()
            bar.set_postfix(
                loss=f"{terms['loss'].item():.3f}",
                seq_per_s=f"{(b + 1) * args.batch_size / (time.perf_counter() - start):.0f}",
            )
        bar.close()
        train = {k: v / n_batches for k, v in totals.items()}

        mdrnn.eval()
        test_windows = sequence_windows(latents, test_ids if len(test_ids) else train_ids, args.seq_len)
        test_totals, test_steps = {k: 0.0 for k in totals}, 0.0
        eval_gen = torch.Generator().manual_seed(args.seed)  # the same z draws every epoch: comparable losses
        with torch.no_grad():
            for b in range(0, len(test_windows), args.batch_size):
                batch = make_batch(
                    latents, test_windows[b : b + args.batch_size], args.seq_len, device, eval_gen
                )
                terms = losses(mdrnn, batch, reward=not args.no_reward)
                steps = batch["mask"].sum().item()
                for k in test_totals:
                    test_totals[k] += terms[k].item() * steps
                test_steps += steps
        test = {k: v / max(test_steps, 1) for k, v in test_totals.items()}
        scheduler.step(test["loss"])
        improved = early.step(test["loss"])
        lr = optimizer.param_groups[0]["lr"]
        state = training_state(
            mdrnn,
            optimizer,
            scheduler,
            early,
            epoch,
            vae_id=vae_id,
            reward_head=not args.no_reward,
            test_loss=test["loss"],
            args=vars(args),
        )
        # best.tar first: a run killed between the two writes redoes this epoch and rewrites both.
        if improved:
            save_checkpoint(state, out_dir / "best.tar")
        save_checkpoint(state, checkpoint_path)
        for k in totals:
            writer.add_scalar(f"train/{k}", train[k], epoch)
            writer.add_scalar(f"test/{k}", test[k], epoch)
        writer.add_scalar("train/lr", lr, epoch)
        if not args.nosamples:
            write_visuals(mdrnn, vae, latents, test_ids, epoch, args, writer, device)
        writer.flush()
        elapsed = time.perf_counter() - start
        print(
            f"epoch {epoch:3d} | train {train['loss']:.4f} (gmm {train['gmm']:.2f} bce {train['bce']:.4f} "
            f"mse {train['mse']:.4f}) | test {test['loss']:.4f} (gmm {test['gmm']:.2f} bce {test['bce']:.4f} "
            f"mse {test['mse']:.4f}) | lr {lr:.1e} | {elapsed:.1f} s{' | best' if improved else ''}"
        )
        history.append(
            {
                "epoch": epoch,
                **{f"train_{k}": v for k, v in train.items()},
                **{f"test_{k}": v for k, v in test.items()},
            }
        )
    writer.close()
    return history


if __name__ == "__main__":
    run(main, build_parser())
