"""Copy a trained run's V, M and C into a small logdir others can drive from at once.

Usage:
    python scripts/export_pretrained.py --logdir runs/budget --out my_agent

Only what the stages load is kept (no optimizer or scheduler, no latent cache: the first frames'
latents are kept so that scripts/dream.py can start dreams). C's CMA-ES search goes in plain tensors
to <out>/ctrl/search.tar (experiment/search.py, ~1.5 MB for CarRacing), so that
`traincontroller.py --logdir <out>` continues the search instead of starting a new one. The weights the agent
acts with (V's encoder, M's LSTM, C) stay float32, so the exported agent drives exactly as the run's
did; the rest (V's decoder, M's mixture heads: dreams and images only) is stored as float16 and cast
back to float32 on load. M's record of the VAE it was trained on is updated to the exported file.
Paths in the records (flags, the rollout directory) become relative to the run's logdir, so the files
name no directory of the machine that trained them.
The weights come to ~12 MB; the run's record (test returns, learning curve, stage times, a GIF at half
size) to ~1.5 MB more, in <out>/run/

The export is built in a fresh directory beside --out and moved into place once complete. An --out that
holds anything is refused unless --force, which replaces it whole (nothing of the old one is mixed into
the new export) only after the new one is complete.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import imageio.v3 as iio  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from data.latents import save_start_pool  # noqa: E402
from data.rollouts import DataRecord  # noqa: E402
from experiment.logdir import Logdir, check_stage, load_agent_parts, load_mdrnn, load_start_latents, load_vae  # noqa: E402
from experiment.search import portable_state, resume_search  # noqa: E402
from utils.checkpoint import atomic_write, file_digest, load_checkpoint, save_checkpoint, umask  # noqa: E402
from utils.cli import UserError, make_parser, run  # noqa: E402
from utils.visuals import save_animation  # noqa: E402

# What the stages read from each checkpoint besides the weights.
KEEP = {
    "vae": ("stage", "model_config", "epoch", "test_loss", "args", "history"),
    "mdrnn": ("stage", "model_config", "epoch", "test_loss", "reward_head", "args", "history"),
}
# The run's record, copied when present: <logdir>/<source> -> <out>/run/<name>.
RECORD = {
    "stages.json": "stages.json",
    "drive.gif": "drive.gif",
    "ctrl/test_returns.json": "test_returns.json",
    "ctrl/test_histogram.png": "test_histogram.png",
    "ctrl/learning_curve.png": "learning_curve.png",
    "ctrl/random_returns.json": "random_returns.json",
    "ctrl/random_histogram.png": "random_histogram.png",
}


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--logdir", type=Path, required=True, help="the trained run")
    parser.add_argument("--out", type=Path, required=True, help="the exported logdir (a new directory)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an --out that holds files, once the new export is complete",
    )
    return parser


def half_size_gif(source: Path, target: Path, fps: float = 25) -> None:
    """Copy an animation at half its width, height and frame rate (2 x 2 pixel means, every other
    frame), at the same speed: a README-sized copy."""

    frames = iio.imread(source, index=None)[::2, ..., :3].astype(np.float32)
    n, h, w, c = frames.shape
    small = frames[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    save_animation(list(np.round(small).astype(np.uint8)), target, fps=fps / 2)


def compact_state(state: dict, exact: set[str]) -> dict:
    """Float tensors to float16, except those named in ``exact`` (the weights the agent acts with)."""
    return {
        k: v if k in exact or not v.is_floating_point() else v.to(torch.float16) for k, v in state.items()
    }


def shareable(value: Any, root: str | None) -> Any:
    """``value`` (a record: flags, the data record) with each absolute path made relative to the run's
    absolute logdir ``root`` (``.`` for the logdir itself); a path elsewhere, or any path when ``root`` is
    None, keeps its last part only."""
    if isinstance(value, dict):
        return {k: shareable(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [shareable(v, root) for v in value]
    if not isinstance(value, str) or not Path(value).is_absolute():
        return value
    path = Path(value)
    return str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else path.name


def shareable_records(checkpoint: dict) -> dict:
    """``checkpoint`` with its ``args`` and ``data`` records :func:`shareable`, paths taken relative to
    the logdir it was trained in (its ``--logdir``, when that was given as an absolute path)."""
    logdir = checkpoint.get("args", {}).get("logdir")
    root = logdir if isinstance(logdir, str) and Path(logdir).is_absolute() else None
    return {k: shareable(v, root) if k in ("args", "data") else v for k, v in checkpoint.items()}


def portable_checkpoint(path: Path) -> dict:
    """C's checkpoint with the pickled CMA-ES object replaced by its plain-tensor state. The pickle is
    read here only, from the owner's own run (the file being exported)."""
    state = check_stage(load_checkpoint(path), "ctrl", path)
    if "cma" not in state:
        raise UserError(f"{path} holds no CMA-ES search (a dream or exported search?): nothing to export")
    winner = state.get("winner")
    portable = {k: v for k, v in state.items() if k not in ("cma", "winner")}
    if winner is not None and winner["search"] == state.get("best_search"):
        # --searches: the agent came from a search that has ended; ship that one, as it stood at its end
        portable["search"], portable["generation"] = winner["state"], winner["generation"]
        portable["history"] = [h for h in state["history"] if h.get("search", 0) <= winner["search"]]
    else:
        portable["search"] = portable_state(resume_search(state["cma"]))
    return portable


def main(args) -> dict[str, int]:
    source, out = Logdir(args.logdir), args.out
    # One clear line, before anything is written, if the run is incomplete or inconsistent.
    load_agent_parts(source.root)
    mu, offsets = load_start_latents(source.root)
    if out.resolve() == source.root.resolve():
        raise UserError("--out must differ from --logdir: the export would overwrite the run")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: name a directory")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise UserError(
            f"--out {out} already holds files: name a new directory, or add --force to replace it"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    building.chmod(0o777 & ~umask())  # mkdtemp's directory is private; the export is a directory like any
    try:
        export(source, Logdir(building), mu, offsets)
        replace_dir(building, out)
    finally:
        shutil.rmtree(building, ignore_errors=True)  # gone after a successful swap; a failed export's part
    sizes = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    for name, size in sizes.items():
        print(f"{name:<28}{size / 1e6:>8.2f} MB")
    print(f"{'total':<28}{sum(sizes.values()) / 1e6:>8.2f} MB -> {out}")
    return sizes


def replace_dir(new: Path, target: Path) -> None:
    """Put the complete directory ``new`` at ``target``; an old ``target`` is moved aside first and
    deleted only once ``new`` is in its place."""
    if not target.exists():
        os.replace(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.replaced-", dir=target.parent))
    os.replace(target, old / target.name)
    os.replace(new, target)
    shutil.rmtree(old)


def export(source: Logdir, target: Logdir, mu: np.ndarray, offsets: np.ndarray) -> None:
    """Write the export of ``source`` into the empty directory ``target``."""

    def copy(path: Path, to: Path) -> None:
        atomic_write(to, lambda f: f.write(path.read_bytes()))

    vae, vae_ckpt = load_vae(source.root)
    mdrnn, mdrnn_ckpt = load_mdrnn(source.root)
    for stage, model, ckpt in (("vae", vae, vae_ckpt), ("mdrnn", mdrnn, mdrnn_ckpt)):
        small = {k: ckpt[k] for k in KEEP[stage] if k in ckpt}
        small["stage"] = stage
        small["model"] = compact_state(ckpt["model"], set(model.acting_state_dict()))
        if stage == "vae":
            small["data"] = DataRecord.from_checkpoint(ckpt, source.best("vae")).to_dict()
        else:
            small["vae_id"] = file_digest(target.best("vae"))
        save_checkpoint(shareable_records(small), target.best(stage))
    # Dreams start from real first frames (scripts/dream.py): keep those latents only.
    save_start_pool(mu, offsets, target.start_latents)
    copy(source.best("ctrl"), target.best("ctrl"))
    search = None
    if source.checkpoint("ctrl").is_file():
        search = portable_checkpoint(source.checkpoint("ctrl"))
    elif source.search_state.is_file():  # an export of an export: its search, as it is
        search = load_checkpoint(source.search_state)
    else:
        print(f"{source.checkpoint('ctrl')} not found: the export has no search state to continue")
    if search is not None:
        save_checkpoint(shareable_records(search), target.search_state)
    for path, name in RECORD.items():
        if (source.root / path).is_file():
            (half_size_gif if name.endswith(".gif") else copy)(source.root / path, target.root / "run" / name)
    load_agent_parts(target.root)  # the export loads as a logdir


if __name__ == "__main__":
    run(main, build_parser())
