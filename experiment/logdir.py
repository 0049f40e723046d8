"""The one place that knows the layout of a logdir and loads each stage's checkpoint from it.

    <logdir>/vae/    checkpoint.tar, best.tar, args.json, samples/, TensorBoard events      trainvae.py
    <logdir>/mdrnn/  checkpoint.tar, best.tar, latents.npz (or start_latents.npz), ...  trainmdrnn.py
    <logdir>/ctrl/   checkpoint.tar, best.tar, learning_curve.png, test_returns.json    traincontroller.py
                     (an exported agent: best.tar and search.tar, the search in plain tensors)

What a stage hands the next is stored in its checkpoint: V's ``data`` record (rollouts, split, env,
preprocessing), M's ``vae_id`` (the digest of the V checkpoint it was trained on), C's ``model_config``.
Every loader raises one clear line (:class:`utils.cli.UserError`) naming the missing or mismatched file
and the command that makes it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data.latents import load_start_pool
from data.rollouts import DataRecord
from driving.agent import AgentSpec
from envs import get_env_spec
from models.controller import Controller, ControllerConfig
from models.mdrnn import MDRNN, MDRNNCell
from models.vae import VAE
from utils.checkpoint import file_digest, load_checkpoint, save_checkpoint
from utils.cli import UserError

STAGES = ("vae", "mdrnn", "ctrl")
SCRIPTS = {"vae": "trainvae.py", "mdrnn": "trainmdrnn.py", "ctrl": "traincontroller.py"}
NAMES = {"vae": "VAE", "mdrnn": "MDN-RNN", "ctrl": "controller"}
BEST, CHECKPOINT = "best.tar", "checkpoint.tar"
# test_controller.py's outputs, in <logdir>/ctrl unless --out: the test, --random-policy, --in-dream,
# and the agent on the pick episodes (--pick).
TEST_RESULTS, RANDOM_RESULTS, DREAM_RESULTS = "test_returns.json", "random_returns.json", "dream_returns.json"
PICK_RETURNS = "pick_returns.json"


def pick_results(name: str) -> str:
    """Where ``test_controller.py --pick`` writes what it writes as ``name`` for the test episodes: the
    agent's returns as :data:`PICK_RETURNS`, the rest as ``pick_<name>``; never over a test's file."""
    return PICK_RETURNS if name == TEST_RESULTS else f"pick_{name}"


@dataclass(frozen=True)
class Logdir:
    """Paths of one experiment directory."""

    root: Path

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    def stage(self, stage: str) -> Path:
        """``<logdir>/<stage>``, for a stage of :data:`STAGES`."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
        return self.root / stage

    def best(self, stage: str) -> Path:
        """The checkpoint later stages load: ``<logdir>/<stage>/best.tar``."""
        return self.stage(stage) / BEST

    def checkpoint(self, stage: str) -> Path:
        """The full training state a rerun resumes from: ``<logdir>/<stage>/checkpoint.tar``."""
        return self.stage(stage) / CHECKPOINT

    @property
    def previous_best(self) -> Path:
        """Where ``traincontroller.py --noreload`` keeps the best controller of the search it replaces."""
        return self.stage("ctrl") / "best.before-noreload.tar"

    @property
    def search_state(self) -> Path:
        """An exported agent's CMA-ES search (experiment/search.py), continued when there is no checkpoint."""
        return self.stage("ctrl") / "search.tar"

    @property
    def latents(self) -> Path:
        """M's latent cache: every rollout encoded by V (data/latents.py)."""
        return self.stage("mdrnn") / "latents.npz"

    @property
    def start_latents(self) -> Path:
        """First-frame latents only, kept by exports to start dreams without the latent cache."""
        return self.stage("mdrnn") / "start_latents.npz"

    @property
    def test_results(self) -> Path:
        """What test_controller.py measured (by default)."""
        return self.stage("ctrl") / TEST_RESULTS

    def missing(self, stage: str) -> str:
        """The one line for a missing best checkpoint of ``stage``."""
        script = SCRIPTS[stage]
        return f"no {NAMES[stage]} checkpoint at {self.best(stage)}: run {script} --logdir {self.root} first"


def checkpoint_stage(checkpoint: dict[str, Any]) -> str | None:
    """Which stage wrote a checkpoint: its ``stage`` field, or for files from before that field, what its
    contents say (None when they say nothing)."""
    if "stage" in checkpoint:
        return checkpoint["stage"]
    config = checkpoint.get("model_config", {})
    if "cma" in checkpoint or ("action" in config and "gaussians" not in config):
        return "ctrl"
    if "gaussians" in config:
        return "mdrnn"
    return "vae" if set(config) == {"latent"} else None


def check_stage(checkpoint: dict[str, Any], stage: str, path: Path) -> dict[str, Any]:
    """``checkpoint``, or one clear line when another stage (or nothing of this project) wrote it."""
    found = checkpoint_stage(checkpoint)
    if found != stage:
        what = f"a {NAMES[found]} checkpoint" if found in NAMES else "not a checkpoint of this project"
        raise UserError(
            f"{path} is {what}, not a {NAMES[stage]} one: put back the file {SCRIPTS[stage]} wrote there "
            f"or rerun {SCRIPTS[stage]}"
        )
    return checkpoint


def _load_best(logdir: Logdir, stage: str) -> dict[str, Any]:
    path = logdir.best(stage)
    if not path.is_file():
        raise UserError(logdir.missing(stage))
    return check_stage(load_checkpoint(path), stage, path)


def _build(model_cls: Any, checkpoint: dict[str, Any], device: torch.device | str) -> Any:
    model = model_cls.from_config(checkpoint["model_config"])
    # Exports keep some weights in float16 (scripts/export_pretrained.py): cast back to the model's dtype.
    model.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in checkpoint["model"].items()}
    )
    return model.to(device).eval()


def load_vae(logdir: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[VAE, dict[str, Any]]:
    """V from ``<logdir>/vae/best.tar`` in eval mode, and its checkpoint."""
    logdir = Logdir(logdir)
    checkpoint = _load_best(logdir, "vae")
    return _build(VAE, checkpoint, device), checkpoint


def load_data_record(logdir: str | os.PathLike) -> DataRecord:
    """The rollouts V was trained on (:class:`data.rollouts.DataRecord`)."""
    logdir = Logdir(logdir)
    return DataRecord.from_checkpoint(_load_best(logdir, "vae"), logdir.best("vae"))


def load_mdrnn(logdir: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[MDRNN, dict[str, Any]]:
    """M from ``<logdir>/mdrnn/best.tar`` in eval mode, and its checkpoint; one clear line when it was
    trained on another V than ``<logdir>/vae/best.tar``."""
    logdir = Logdir(logdir)
    checkpoint = _load_best(logdir, "mdrnn")
    check_trained_on_this_vae(logdir, checkpoint, logdir.best("mdrnn"))
    return _build(MDRNN, checkpoint, device), checkpoint


def check_trained_on_this_vae(logdir: Logdir, mdrnn_checkpoint: dict[str, Any], path: Path) -> None:
    """Raise one line when an M checkpoint's ``vae_id`` is not the digest of ``<logdir>/vae/best.tar``."""
    vae_path = logdir.best("vae")
    if not vae_path.is_file():
        raise UserError(logdir.missing("vae"))
    if mdrnn_checkpoint.get("vae_id") != file_digest(vae_path):
        raise UserError(
            f"{path} was trained on another VAE than {vae_path}: "
            f"rerun trainmdrnn.py --logdir {logdir.root} --noreload"
        )


def load_dream_cell(logdir: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[MDRNNCell, dict]:
    """M (all heads) as a one-step cell; one clear line when the env's reward is M's to predict but its
    reward head was not trained (``--no-reward``), since such a dream cannot rank controllers."""
    mdrnn, checkpoint = load_mdrnn(logdir)
    survival = not get_env_spec(load_data_record(logdir).env).reward_head  # dreams count steps alive
    if not survival and not checkpoint.get("reward_head", False):
        raise UserError(
            f"{Logdir(logdir).best('mdrnn')} has no trained reward head (trained with --no-reward), so it "
            f"cannot score dreams: rerun trainmdrnn.py --logdir {logdir} --noreload without --no-reward"
        )
    cell = MDRNNCell.from_config(mdrnn.config)
    cell.load_state_dict(mdrnn.state_dict())
    return cell.to(device).eval(), checkpoint


def load_start_latents(logdir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Latents (F, L) and rollout frame offsets (R + 1,) to start dreams from: M's latent cache, or the
    first-frame latents an exported logdir keeps."""
    logdir = Logdir(logdir)
    return load_start_pool(logdir.latents, logdir.start_latents)


def new_controller_config(vae: VAE | dict, mdrnn: MDRNN | dict, env: str) -> ControllerConfig:
    """C's shape for a new search: V's and M's sizes, and what the env spec says C reads."""
    vae_config = vae if isinstance(vae, dict) else vae.config
    mdrnn_config = mdrnn if isinstance(mdrnn, dict) else mdrnn.config
    sizes = get_env_spec(env).model
    return ControllerConfig(
        latent=int(vae_config["latent"]),
        hidden=int(mdrnn_config["hidden"]),
        action=int(mdrnn_config["action"]),
        inputs=sizes.controller_inputs,
        bias=sizes.controller_bias,
    )


def load_agent_spec(logdir: str | os.PathLike, controller: ControllerConfig | None = None) -> AgentSpec:
    """What workers need to act in the env: V's encoder and M's LSTM from the logdir (M checked to be
    trained on this V), the env and preprocessing of V's data, and C's shape (``controller``, default:
    a new search's shape for this env)."""
    vae, vae_checkpoint = load_vae(logdir)
    mdrnn, _ = load_mdrnn(logdir)
    data = DataRecord.from_checkpoint(vae_checkpoint, Logdir(logdir).best("vae"))
    controller = controller or new_controller_config(vae, mdrnn, data.env)
    return AgentSpec.of(vae, mdrnn, data.env, data.preprocessing, controller)


def load_controller(logdir: str | os.PathLike) -> tuple[np.ndarray, ControllerConfig, dict[str, Any]]:
    """The flat vector of ``<logdir>/ctrl/best.tar``, its shape and its checkpoint."""
    return _controller_parts(_load_best(Logdir(logdir), "ctrl"))


def load_controller_file(path: str | os.PathLike) -> tuple[np.ndarray, ControllerConfig, dict[str, Any]]:
    """:func:`load_controller` of a controller checkpoint anywhere (any run's ``ctrl/best.tar``, or
    what ``scripts/probe_socnav.py --save-c`` fits)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such controller checkpoint")
    return _controller_parts(check_stage(load_checkpoint(path), "ctrl", path))


def _controller_parts(checkpoint: dict[str, Any]) -> tuple[np.ndarray, ControllerConfig, dict[str, Any]]:
    """C's flat vector, its shape and ``checkpoint`` itself, from a controller checkpoint."""
    controller = _build(Controller, checkpoint, "cpu")
    return controller.parameters_to_vector(), controller.layout, checkpoint


def save_controller(path: Path, params: np.ndarray, config: ControllerConfig, **record: Any) -> None:
    """C's flat vector ``params`` as a controller checkpoint at ``path`` (atomically), with ``record``
    (its score, returns, generation, source, z_mode: what a ``ctrl/best.tar`` says of itself)."""
    controller = Controller(config)
    controller.load_vector(params)
    checkpoint = {"stage": "ctrl", "model": controller.state_dict(), "model_config": controller.config}
    save_checkpoint({**checkpoint, **record}, path)


def load_agent_parts(logdir: str | os.PathLike) -> tuple[AgentSpec, np.ndarray, dict[str, Any]]:
    """The trained agent of a logdir: its spec, C's flat vector and C's checkpoint. The controller is
    loaded first: it is what a missing stage is most likely to be."""
    params, config, checkpoint = load_controller(logdir)
    spec = load_agent_spec(logdir, config)
    shape = (config.latent, config.hidden, config.action)
    if shape != (spec.controller.latent, spec.controller.hidden, spec.controller.action):
        raise UserError(f"{Logdir(logdir).best('ctrl')} does not fit this logdir's V and M: retrain C")
    return spec, params, checkpoint
