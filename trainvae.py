"""Train V, the convolutional VAE, on the frames of the rollouts.

Usage:
    python trainvae.py --logdir exp_dir --dataset datasets/carracing
    python trainvae.py --logdir /tmp/smoke --dataset /tmp/rollouts --epochs 1 --max-batches 5   # smoke run

Writes <logdir>/vae/: checkpoint.tar (every epoch), best.tar (when the test loss improves), args.json,
TensorBoard events and samples/*.png. Rerunning with the same --logdir resumes at the next epoch with
the optimizer, scheduler and early-stopping state; --noreload starts over (experiment/training.py, the
loop V and M share). Frames are decoded once into a memory-mapped cache under <dataset>/.cache (see
data/frames.py). The train/test split is by rollout (data/rollouts.split_names), the same for every
stage. The checkpoint keeps a record of the data (rollout directory, split, env, preprocessing) for
the stages after V.

Defaults are the paper's: Adam at lr 1e-4, batch 100, KL floor 0.5 nats per latent dimension; the
latent size is the env's (32 for CarRacing).

--label-weight W (games whose rollouts record state labels: SocNavGym) adds V's state head, a linear map
from mu to the labels of each frame (standardised on the training frames), and W times its squared
error (summed over the labels) to the loss, so that z holds what the simulator's state says there
(the nearest furniture, which the paper's loss leaves faint). The labels are used in training only: the
agent acts from pixels. ``label`` in the logs is the head's mean squared error per label, standardised:
about 1 - R^2 on held-out frames.
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
from data.rollouts import DEFAULT_TEST_FRACTION, DataRecord
from envs import get_env_spec
from experiment.logdir import Logdir
from experiment.training import (
    EarlyStopping,
    add_training_flags,
    check_resumed_model,
    plateau_scheduler,
    resume_checkpoint,
    train_epochs,
)
from models.vae import VAE, frames_to_tensor, vae_loss
from utils.cli import (
    UserError,
    add_workers_flag,
    check_stop,
    fraction,
    make_parser,
    nonnegative_float,
    positive_float,
    positive_int,
    run,
)
from utils.device import resolve_device
from utils.locking import exclusive
from utils.precision import MEMORY_FORMATS, PRECISIONS, resolve_numerics
from utils.seeding import derive_seed, seed_everything
from utils.visuals import image_grid, save_png, to_uint8

# Tags separating the random streams derived from --seed.
_SHUFFLE, _TRAIN_NOISE, _TEST_NOISE, _PRIOR = 1, 2, 3, 4
N_SAMPLES = 8  # test frames shown beside their reconstructions; the prior grid is N_SAMPLES^2


def build_parser():
    parser = make_parser(__doc__)
    add_training_flags(parser, epochs=10, batch_size=100, batch_unit="frames", lr=1e-4)
    parser.add_argument(
        "--dataset",
        type=Path,
        default=Path("datasets/carracing"),
        help="rollout directory (searched recursively)",
    )
    parser.add_argument(
        "--test-fraction", type=fraction, default=DEFAULT_TEST_FRACTION, help="share of rollouts held out"
    )
    parser.add_argument(
        "--latent", type=positive_int, default=None, help="latent size of a fresh model (default: the env's)"
    )
    parser.add_argument(
        "--kl-tolerance",
        type=nonnegative_float,
        default=0.5,
        help="KL floor in nats per latent dimension (free bits); 0 gives the plain ELBO",
    )
    parser.add_argument(
        "--salient-weight",
        type=positive_float,
        default=1.0,
        help="what the squared error of the pixels the game marks salient counts in the loss (SocNavGym's "
        "ego view: the goal and people); 1 gives the paper's loss",
    )
    parser.add_argument(
        "--salient",
        default=None,
        help="which of the game's masks --salient-weight weights (SocNavGym's ego view: goal-people; "
        "coloured, which adds furniture; graded, furniture at a share of it); default: the game's first",
    )
    parser.add_argument(
        "--label-weight",
        type=nonnegative_float,
        default=0.0,
        help="what the state head's squared error on the rollouts' state labels (SocNavGym's) counts in "
        "the loss; 0: no head, the paper's loss",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: bf16 autocast on CPUs with native bf16, else fp32 (on CUDA too: faster there for V)",
    )
    parser.add_argument(
        "--memory-format",
        choices=MEMORY_FORMATS,
        default="auto",
        help="auto: channels_last on CPU, and on CUDA with bf16",
    )
    add_workers_flag(parser, "--workers", "threads decompressing rollouts when building the frame cache")
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="frame cache directory (default: <dataset>/.cache)"
    )
    parser.add_argument(
        "--skip-bad-files",
        action="store_true",
        help="leave out corrupt or mismatched rollout files with a warning instead of stopping",
    )
    return parser


def run_epoch(
    vae,
    cache,
    indices,
    args,
    numerics,
    device,
    optimizer=None,
    rng=None,
    writer=None,
    step=0,
    desc="",
    salient=None,
):
    """One pass over ``frames[indices]``; trains when ``optimizer`` is given; returns means and frames/s.
    ``salient`` (one of the game's :attr:`EnvSpec.salient` masks) weights the pixels it marks by
    --salient-weight."""
    training = optimizer is not None
    vae.train(training)
    with_labels = args.label_weight > 0
    batches = cache.batches(indices, args.batch_size, rng, args.max_batches, with_labels=with_labels)
    n_batches = -(-len(indices) // args.batch_size)
    if args.max_batches is not None:
        n_batches = min(n_batches, args.max_batches)
    totals, n_frames, start = np.zeros(4), 0, time.perf_counter()
    bar = tqdm(batches, total=n_batches, desc=desc, unit="batch", leave=False, dynamic_ncols=True)
    for batch in bar:
        check_stop()
        frames, labels = batch if with_labels else (batch, None)
        x = frames_to_tensor(frames, device).contiguous(memory_format=numerics.memory_format)
        with torch.set_grad_enabled(training):
            with numerics.autocast():
                recon, mu, logsigma = vae(x)
            weights = None if salient is None else 1 + (args.salient_weight - 1) * salient(x).to(x.dtype)
            loss, recon_loss, kl = vae_loss(recon, x, mu, logsigma, args.kl_tolerance, weights)
            label = torch.zeros(())
            if with_labels:
                error = vae.label_error(mu, labels.to(device))
                loss = loss + args.label_weight * error.mean()
                label = error.mean() / vae.labels  # per label: about 1 - R^2
        if training:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if writer is not None and step % 50 == 0:
                writer.add_scalar("train/batch_loss", loss.item(), step)
        b = x.shape[0]
        totals += b * torch.stack([loss, recon_loss, kl, label.to(loss)]).detach().double().cpu().numpy()
        n_frames += b
        fps = n_frames / (time.perf_counter() - start)
        bar.set_postfix(loss=f"{totals[0] / n_frames:.1f}", frames_per_s=f"{fps:.0f}", refresh=False)
    bar.close()
    loss, recon_loss, kl, label = (totals / max(n_frames, 1)).tolist()
    means = {"loss": loss, "recon": recon_loss, "kl": kl, **({"label": label} if with_labels else {})}
    return {**means, "frames_per_s": fps if n_frames else 0.0}, step


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
    """Train, resuming from ``<logdir>/vae/checkpoint.tar`` unless --noreload; returns the history.
    One run at a time per logdir (a second one stops at once, naming the first)."""
    with exclusive(Logdir(args.logdir).stage("vae"), f"the VAE stage of {args.logdir}"):
        return train(args)


def check_same_data(trained_on: DataRecord, data: DataRecord, logdir: Logdir) -> None:
    """A resumed V goes on with its own rollouts and split: its best.tar is ranked on their held-out
    frames, which another --dataset or --test-fraction would change (or train on)."""
    path = logdir.checkpoint("vae")
    rootdir = (logdir.root / trained_on.rootdir).resolve()  # relative in an exported agent's record
    if trained_on.test_fraction != data.test_fraction:
        raise UserError(
            f"{path} was trained with --test-fraction {trained_on.test_fraction}, whose held-out rollouts "
            f"rank best.tar: pass it to resume, or use another --logdir or --noreload"
        )
    if rootdir != Path(data.rootdir):
        raise UserError(
            f"{path} was trained on {rootdir}, not --dataset {data.rootdir}: pass --dataset {rootdir} to "
            f"resume, or use another --logdir or --noreload"
        )


def check_same_loss(trained_with: dict, args, logdir: Logdir) -> None:
    """A resumed V goes on with the loss it was trained on: another --salient-weight, --salient or
    --label-weight would rank best.tar on a test loss its earlier epochs were not scored on."""
    for flag, default in (("salient_weight", 1.0), ("salient", None), ("label_weight", 0.0)):
        held, asked = trained_with.get(flag, default), getattr(args, flag)
        if held != asked:
            name = "--" + flag.replace("_", "-")
            given = f"{name} {held}" if held is not None else f"no {name}"
            fix = f"pass {name} {held}" if held is not None else f"drop {name}"
            raise UserError(
                f"{logdir.checkpoint('vae')} was trained with {given}, not {name} {asked}: {fix} to resume, "
                f"or use another --logdir or --noreload"
            )


def train(args) -> list[dict]:
    device = resolve_device(args.device)
    numerics = resolve_numerics(args.precision, args.memory_format, device, auto_bf16_on_cuda=False)
    logdir = Logdir(args.logdir)
    out = logdir.stage("vae")
    cache = FrameCache.open(args.dataset, args.cache_dir, args.skip_bad_files, args.workers)
    data = DataRecord(str(Path(args.dataset).resolve()), args.test_fraction, cache.env, cache.preprocessing)
    train_idx, test_idx = cache.split(args.test_fraction)
    if len(train_idx) == 0:
        raise UserError(
            f"{args.dataset}: no training rollouts after the split; lower --test-fraction or add rollouts"
        )
    if len(test_idx) == 0:
        print("no test rollouts (too few files or --test-fraction 0): best.tar is chosen on the train loss")
    print(
        f"{len(train_idx)} train / {len(test_idx)} test frames from {len(cache.files)} rollouts "
        f"({data.env}, {data.preprocessing}); {device}, {numerics}"
    )

    spec = get_env_spec(data.env)
    if args.salient_weight != 1 and not spec.salient:
        raise UserError(
            f"--salient-weight {args.salient_weight}: {data.env} marks no pixels salient; leave it at 1"
        )
    if args.salient is not None and args.salient not in spec.salient:
        raise UserError(f"--salient {args.salient}: {data.env} marks {' or '.join(spec.salient) or 'none'}")
    salient = None
    if args.salient_weight != 1:
        salient = spec.salient[args.salient or next(iter(spec.salient))]
    if args.label_weight and cache.labels is None:
        why = (
            f"{cache.unlabelled} of its rollouts carry none (written before labels were recorded): "
            f"regenerate them with data/generation_script.py"
            if spec.labels
            else f"{data.env} records none: leave it at 0"
        )
        raise UserError(
            f"--label-weight {args.label_weight}: the state head needs the rollouts' labels; {why}"
        )
    state = resume_checkpoint(out, args.noreload)
    latent = args.latent or spec.model.latent
    if state is not None:
        trained_on = DataRecord.from_checkpoint(state, logdir.checkpoint("vae"))
        if (trained_on.env, trained_on.preprocessing) != (data.env, data.preprocessing):
            raise UserError(
                f"{logdir.checkpoint('vae')} was trained on {trained_on.env} frames "
                f"({trained_on.preprocessing}) "
                f"but {args.dataset} holds {data.env} frames ({data.preprocessing}); "
                f"use another --logdir or --noreload"
            )
        check_resumed_model(state, {"latent": args.latent}, logdir.checkpoint("vae"))
        check_same_data(trained_on, data, logdir)
        check_same_loss(state["args"], args, logdir)

    seed_everything(args.seed)
    labels = cache.labels.shape[1] if args.label_weight else 0
    vae = VAE.from_config(state["model_config"]) if state else VAE(latent, labels)
    if labels and not state:  # standardised on the training frames (a resumed V keeps its own)
        rows = cache.labels[np.sort(train_idx)]
        vae.label_mean.copy_(torch.from_numpy(rows.mean(0)))
        spread = rows.std(0)
        vae.label_std.copy_(torch.from_numpy(np.where(spread > 1e-6, spread, 1).astype(np.float32)))
    vae.to(device=device, memory_format=numerics.memory_format)
    optimizer = torch.optim.Adam(
        vae.parameters(), lr=args.lr
    )  # a resumed run takes its lr from the checkpoint
    scheduler = plateau_scheduler(optimizer, args.lr_patience)
    early = EarlyStopping(args.patience)

    def epoch_fn(epoch: int, step: int, writer) -> tuple[dict, dict, int]:
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
            salient,
        )
        torch.manual_seed(derive_seed(args.seed, _TEST_NOISE))  # the same noise every epoch
        if len(test_idx):
            test, _ = run_epoch(
                vae, cache, test_idx, args, numerics, device, desc=f"epoch {epoch} test", salient=salient
            )
        else:
            test = train
        test = {k: v for k, v in test.items() if k != "frames_per_s"}
        return train, test, step

    def pictures(epoch: int, writer) -> None:
        if not args.nosamples:
            write_samples(
                vae, cache, test_idx if len(test_idx) else train_idx, args, device, epoch, writer, out
            )

    return train_epochs(
        out, args, vae, optimizer, scheduler, early, state, epoch_fn, {"data": data.to_dict()}, pictures
    )


if __name__ == "__main__":
    run(main, build_parser())
