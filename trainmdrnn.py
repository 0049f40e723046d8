"""Train M, the mixture-density LSTM, on rollouts encoded by V.

Usage:
    python trainmdrnn.py --logdir exp_dir

Needs <logdir>/vae/best.tar (trainvae.py), whose data record names the rollouts, their train/test
split and their env. Every rollout is encoded once by V's encoder into <logdir>/mdrnn/latents.npz
(rebuilt when the rollouts or the VAE change); batches then draw z = mu + sigma * eps afresh. Writes
<logdir>/mdrnn/checkpoint.tar every epoch and best.tar when the test loss improves, and resumes from
checkpoint.tar unless --noreload (experiment/training.py, the loop V and M share). The hidden size and
mixture size of a new M are the env's (256 and 5 for CarRacing).
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

from data.latents import Latents, first_step_windows, load_or_build_latents, make_batch, sequence_windows
from data.rollouts import DataRecord, list_rollouts, split_names
from envs import get_env_spec
from experiment.logdir import Logdir, check_trained_on_this_vae, load_vae
from experiment.training import (
    EarlyStopping,
    add_training_flags,
    check_resumed_model,
    plateau_scheduler,
    resume_checkpoint,
    train_epochs,
)
from models.dream import Dream, add_temperature_flag
from models.mdrnn import MDRNN, MDRNNCell, gmm_loss, sample_latent
from utils.checkpoint import file_digest
from utils.cli import (
    UserError,
    check_stop,
    make_parser,
    positive_int,
    run,
)
from utils.device import resolve_device
from utils.locking import check_not_in_use, exclusive
from utils.seeding import derive_seed, seed_everything
from utils.visuals import image_grid, label_rows, save_animation, save_png, to_uint8


def build_parser():
    parser = make_parser(__doc__)
    add_training_flags(parser, epochs=30, batch_size=64, batch_unit="sequences", lr=1e-3)
    parser.add_argument(
        "--dataset",
        type=Path,
        default=None,
        help="rollout directory (default: the one the VAE was trained on, from its data record)",
    )
    parser.add_argument("--seq-len", type=positive_int, default=32, help="steps per training sequence")
    parser.add_argument(
        "--grad-clip", type=float, default=1.0, help="gradient norm clip, 0 for none (paper: 1.0)"
    )
    parser.add_argument(
        "--hidden", type=positive_int, default=None, help="LSTM units of a fresh model (default: the env's)"
    )
    parser.add_argument(
        "--gaussians",
        type=positive_int,
        default=None,
        help="mixture components per latent dim of a fresh model (default: the env's)",
    )
    parser.add_argument(
        "--no-reward",
        action="store_true",
        help="do not train the reward head (dream training on an env whose reward M must predict, such as "
        "CarRacing, then cannot use this M); envs whose reward is survival never train it",
    )
    add_temperature_flag(parser, "the dreams drawn each epoch (the controller stage's default)")
    return parser


def losses(
    mdrnn: MDRNN, batch: dict[str, torch.Tensor], reward: bool, done_weight: float = 1.0
) -> dict[str, torch.Tensor]:
    """Masked mean losses of a batch; ``loss`` = (gmm + bce + mse) / (latent + 2), each term per step.

    gmm is the negative log-likelihood of z_{t+1} summed over latent dimensions; bce the termination
    cross-entropy (targets are real terminations only: a time-limit cut is never a death), its positive
    targets weighted ``done_weight`` (the env's; the paper's Doom M: 10); mse the reward error. Dividing
    by latent + 2 puts all three on a per-dimension scale.
    """
    out = mdrnn(batch["actions"], batch["latents"])
    mask = batch["mask"]
    n = mask.sum().clamp(min=1)
    gmm = (gmm_loss(batch["next_latents"], out.mus, out.sigmas, out.logpi, reduce=False) * mask).sum() / n
    bce = (
        F.binary_cross_entropy_with_logits(
            out.terminations, batch["terminals"], reduction="none", pos_weight=torch.tensor(done_weight)
        )
        * mask
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
    """Feed real latents (C, L) with the first C actions, then let M dream on its own samples.

    actions: (T, A) with T >= C. Returns (T, L): for step t the z M produced for frame t + 1.
    """
    dream = Dream(cell, temperature, generator=generator)
    dream.reset(z_context[:1])
    produced = []
    for t in range(actions.shape[0]):
        context = z_context[t : t + 1] if t < z_context.shape[0] else None
        produced.append(dream.step(actions[t : t + 1], context).z[0])
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
    out_dir = Logdir(args.logdir).stage("mdrnn") / "samples"
    save_png(strip, out_dir / f"epoch_{epoch:03d}_predictions.png")
    side_by_side = [
        np.concatenate([a, b], axis=1).repeat(3, 0).repeat(3, 1)
        for a, b in zip(real_frames, dream_frames, strict=True)
    ]
    save_animation(side_by_side, out_dir / f"epoch_{epoch:03d}_dream.gif", fps=15)
    writer.add_image("samples/real_prediction_dream", strip, epoch, dataformats="HWC")


FIRST_STEPS = 20  # a rollout's opening steps, M run from the zero state as when it acts and dreams


def evaluate(
    mdrnn: MDRNN, latents: Latents, ids: np.ndarray, args, device, reward: bool, done_weight: float
) -> dict[str, float]:
    """Step-weighted mean losses over every window of rollouts ``ids``, with the same z draws each epoch,
    and ``first20``: the loss of each rollout's first :data:`FIRST_STEPS` steps, M started from the
    zero state at step 0 as when it acts and dreams."""
    mdrnn.eval()
    windows = sequence_windows(latents, ids, args.seq_len)
    if args.max_batches:
        windows = windows[: args.max_batches * args.batch_size]
    means = batch_means(mdrnn, latents, windows, args.seq_len, args, device, reward, done_weight)
    first = first_step_windows(latents, ids, FIRST_STEPS)
    opening = batch_means(mdrnn, latents, first, FIRST_STEPS, args, device, reward, done_weight)
    return {**means, f"first{FIRST_STEPS}": opening["loss"]}


@torch.no_grad()
def batch_means(
    mdrnn: MDRNN, latents: Latents, windows: np.ndarray, seq_len: int, args, device, reward: bool, done_weight
) -> dict[str, float]:
    """Step-weighted mean losses over ``windows``, z drawn from a generator seeded with --seed."""
    totals, n_steps = dict.fromkeys(("loss", "gmm", "bce", "mse"), 0.0), 0.0
    generator = torch.Generator().manual_seed(args.seed)  # the same z draws every epoch: comparable losses
    for b in range(0, len(windows), args.batch_size):
        batch = make_batch(latents, windows[b : b + args.batch_size], seq_len, device, generator)
        terms = losses(mdrnn, batch, reward, done_weight)
        steps = batch["mask"].sum().item()
        for k in totals:
            totals[k] += terms[k].item() * steps
        n_steps += steps
    return {k: v / max(n_steps, 1) for k, v in totals.items()}


def main(args) -> list[dict[str, float]]:
    """Train M, resuming from ``<logdir>/mdrnn/checkpoint.tar`` unless --noreload; returns the history.
    One run at a time per logdir (a second one stops at once, naming the first)."""
    with exclusive(Logdir(args.logdir).stage("mdrnn"), f"the MDN-RNN stage of {args.logdir}"):
        return train(args)


def train(args) -> list[dict[str, float]]:
    device = resolve_device(args.device)
    seed_everything(args.seed)
    logdir = Logdir(args.logdir)
    vae, vae_checkpoint = load_vae(logdir.root, device)
    data = DataRecord.from_checkpoint(vae_checkpoint, logdir.best("vae"))
    env = get_env_spec(data.env)
    rootdir = args.dataset or logdir.root / data.rootdir  # relative in an exported agent's record
    files = list_rollouts(rootdir)
    check_not_in_use(rootdir, f"rollout directory {rootdir}")  # not while rollouts are being written
    latents, rebuilt = load_or_build_latents(
        logdir.latents, files, rootdir, vae, logdir.best("vae"), data.env, data.preprocessing, device
    )
    print(
        f"latents: {len(latents.names)} {data.env} rollouts, {len(latents.actions)} steps "
        f"({'encoded now' if rebuilt else 'from cache'})"
    )
    _, test_names = split_names(list(latents.names), data.test_fraction)
    is_test = np.isin(latents.names, test_names)
    train_ids, test_ids = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    if len(train_ids) == 0:
        raise UserError(f"{rootdir}: no training rollouts after the train/test split; generate more rollouts")
    if len(test_ids) == 0:
        print(
            "no test rollouts (too few files or V's --test-fraction 0): best.tar is chosen on the train loss"
        )

    out = logdir.stage("mdrnn")
    vae_id = file_digest(logdir.best("vae"))
    sizes = env.model
    config = {
        "latent": vae.latent,
        "action": env.action_size,
        "hidden": args.hidden or sizes.hidden,
        "gaussians": args.gaussians or sizes.gaussians,
    }
    state = resume_checkpoint(out, args.noreload)
    if state is not None:
        check_trained_on_this_vae(logdir, state, logdir.checkpoint("mdrnn"))
        check_resumed_model(
            state, {"hidden": args.hidden, "gaussians": args.gaussians}, logdir.checkpoint("mdrnn")
        )
        config = state["model_config"]
    mdrnn = MDRNN.from_config(config).to(device)
    reward = env.reward_head and not args.no_reward  # Doom's reward is +1 per frame alive: nothing to learn
    optimizer = torch.optim.Adam(mdrnn.parameters(), lr=args.lr)
    scheduler = plateau_scheduler(optimizer, args.lr_patience)
    early = EarlyStopping(args.patience)

    def epoch_fn(epoch: int, step: int, writer) -> tuple[dict, dict, int]:
        mdrnn.train()
        # Streams seeded per epoch: a resumed run draws exactly what an uninterrupted one would.
        batch_rng = np.random.default_rng(derive_seed(args.seed, epoch))
        z_gen = torch.Generator().manual_seed(derive_seed(args.seed, epoch, 1))
        windows = sequence_windows(latents, train_ids, args.seq_len, batch_rng)
        windows = windows[batch_rng.permutation(len(windows))]
        n_batches = -(-len(windows) // args.batch_size)
        if args.max_batches:
            n_batches = min(n_batches, args.max_batches)
        totals = dict.fromkeys(("loss", "gmm", "bce", "mse"), 0.0)
        start = time.perf_counter()
        bar = tqdm(range(n_batches), desc=f"epoch {epoch}", unit="batch", dynamic_ncols=True, leave=False)
        for b in bar:
            check_stop()
            batch = make_batch(
                latents, windows[b * args.batch_size : (b + 1) * args.batch_size], args.seq_len, device, z_gen
            )
            terms = losses(mdrnn, batch, reward, env.done_weight)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            if args.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(mdrnn.parameters(), args.grad_clip)
            optimizer.step()
            step += 1
            for k in totals:
                totals[k] += terms[k].item()
            bar.set_postfix(
                loss=f"{terms['loss'].item():.3f}",
                seq_per_s=f"{(b + 1) * args.batch_size / (time.perf_counter() - start):.0f}",
            )
        bar.close()
        train = {k: v / n_batches for k, v in totals.items()}
        test = evaluate(
            mdrnn, latents, test_ids if len(test_ids) else train_ids, args, device, reward, env.done_weight
        )
        return train, test, step

    def pictures(epoch: int, writer) -> None:
        if not args.nosamples:
            write_visuals(mdrnn, vae, latents, test_ids, epoch, args, writer, device)

    extra = {"vae_id": vae_id, "reward_head": reward}
    return train_epochs(out, args, mdrnn, optimizer, scheduler, early, state, epoch_fn, extra, pictures)


if __name__ == "__main__":
    run(main, build_parser())
