"""Convert the checkpoints of a logdir you trust to the weights-only format the stages load.

Usage:
    python scripts/upgrade_checkpoint.py --logdir exp_dir

The stages load checkpoints with ``torch.load(weights_only=True)``: tensors and plain values only, so a
file can never run code on whoever loads it. Files written by earlier versions of this project also
hold Python objects (paths among the flags, NumPy's random state) and are refused. This script reads
every ``*.tar`` under ``<logdir>/{vae,mdrnn,ctrl}`` with full unpickling, which runs whatever the
file asks for: use it only on files you made yourself. It rewrites each one (atomically) with the
same weights and plain values, records which stage wrote it, and updates M's record of the V
checkpoint it was trained on, whose bytes change.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from experiment.logdir import STAGES, Logdir, checkpoint_stage  # noqa: E402
from utils.checkpoint import file_digest, load_checkpoint, save_checkpoint  # noqa: E402
from utils.cli import UserError, make_parser, run  # noqa: E402


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument(
        "--logdir", type=Path, required=True, help="the experiment whose checkpoints to convert"
    )
    return parser


def plain(checkpoint: dict, stage: str) -> dict:
    """The same checkpoint with plain values where earlier versions stored Python objects."""
    out = dict(checkpoint)
    out.setdefault("stage", stage)
    if "args" in out:
        out["args"] = json.loads(json.dumps(out["args"], default=str))
    rng = out.get("rng")
    if rng is not None and isinstance(rng.get("numpy"), tuple):
        kind, keys, pos, has_gauss, cached = rng["numpy"]
        numpy_state = {"kind": kind, "keys": np.asarray(keys).tolist(), "pos": int(pos)}
        numpy_state.update(has_gauss=int(has_gauss), cached=float(cached))
        out["rng"] = {**rng, "numpy": numpy_state}
    return out


def upgrade(path: Path, stage: str) -> bool:
    """Rewrite ``path`` weights-only loadable; False when it already was."""
    try:
        load_checkpoint(path)
        return False
    except UserError:
        pass
    try:
        old = torch.load(
            path, map_location="cpu", weights_only=False
        )  # trusted by the user: see the docstring
    except Exception as err:  # noqa: BLE001 - damaged or foreign: nothing to convert
        raise UserError(f"cannot read {path} ({type(err).__name__}: {err}); it is not a checkpoint") from None
    new = plain(old, checkpoint_stage(old) or stage)
    buffer = io.BytesIO()
    torch.save(new, buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=True)  # fails here, before anything is written, if still not plain
    save_checkpoint(new, path)
    return True


def main(args) -> list[Path]:
    logdir = Logdir(args.logdir)
    vae_before = file_digest(logdir.best("vae")) if logdir.best("vae").is_file() else None
    changed = []
    for stage in STAGES:
        for path in sorted(logdir.stage(stage).glob("*.tar")):
            if upgrade(path, stage):
                changed.append(path)
    if vae_before is not None and logdir.best("vae") in changed:
        vae_after = file_digest(logdir.best("vae"))
        for path in sorted(logdir.stage("mdrnn").glob("*.tar")):
            checkpoint = load_checkpoint(path)
            if checkpoint.get("vae_id") == vae_before:
                save_checkpoint({**checkpoint, "vae_id": vae_after}, path)
                if path not in changed:
                    changed.append(path)
    for path in changed:
        print(f"converted {path}")
    print(f"{len(changed)} file(s) converted under {logdir.root}")
    return changed


if __name__ == "__main__":
    run(main, build_parser())
