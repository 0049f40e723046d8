"""Evolve C, the linear controller, with CMA-ES in the real environment or inside M's dream.

Usage:
    python traincontroller.py --logdir exp_dir --n-samples 4 --pop-size 4 --target-return 950 --display

Needs <logdir>/vae/best.tar and <logdir>/mdrnn/best.tar; the env is the one V was trained on, and C's
shape (what it reads: [z, h] for CarRacing) comes from its spec. Every generation each candidate drives
--n-samples episodes (the same tracks for all candidates of a generation); its fitness is the mean
return. Every --eval-every generations the CMA-ES mean and the generation's best are evaluated on
--eval-episodes fixed tracks, and the best evaluated controller goes to <logdir>/ctrl/best.tar.
The whole CMA-ES state is saved every generation to <logdir>/ctrl/checkpoint.tar; a rerun resumes the
search unless --noreload. An exported agent (scripts/export_pretrained.py) has no checkpoint but its
search in plain tensors, <logdir>/ctrl/search.tar: that search continues (experiment/search.py).

--searches N runs N independent searches one after the other, search k from seed --seed + k (its own
start and training tracks: search k is the search a run with --seed + k would make) for --generations
each; all are evaluated on the same tracks, so best.tar is the best controller of them all. The seed of
one search moves the final score more than most settings do; picking among several is the remedy.

--start-from FILE centres a new search on a given controller (another run's best.tar on the same V and M,
or the linear C scripts/probe_socnav.py --save-c fits to a reference's actions), evaluated first on the
evaluation tracks as generation 0.

With --dream, candidates are scored inside M's dream instead (models/dream.py: --dream-steps steps at
temperature --temperature, from real first frames of the latent cache, all candidates as one batched
tensor computation, seeded in a namespace of its own); the evaluations still run in the real env, so
the log shows both. Each evaluation also writes <logdir>/ctrl/dream_gen_XXX.gif, a dream of the CMA
mean decoded by V.
"""

from __future__ import annotations

import math
import os
import pickle
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from tqdm import tqdm

from driving.display import Display
from driving.episode import Episode, WorkerError
from driving.flags import add_driving_flags, episode_settings, worker_devices
from driving.pool import EpisodePool, make_pool
from envs import EnvSpec, get_env_spec
from experiment.logdir import (
    Logdir,
    check_stage,
    load_agent_spec,
    load_controller,
    load_controller_file,
    load_dream_cell,
    load_start_latents,
    load_vae,
    save_controller,
)
from experiment.search import continue_search, new_search, portable_state, resume_search
from models.controller import ControllerBatch, ControllerConfig
from models.dream import (
    DONE_MODES,
    START_MODES,
    Dream,
    add_temperature_flag,
    decode_latents,
    dream_returns,
    start_latents,
)
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.cli import (
    UserError,
    check_stop,
    make_parser,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    run,
)
from utils.device import resolve_device
from utils.locking import exclusive
from utils.logging import args_record, make_writer, save_args
from utils.plots import curves_png
from utils.precision import PRECISIONS, resolve_numerics
from utils.seeding import (
    DREAM_EPISODES,
    EVAL_EPISODES,
    TRAIN_EPISODES,
    derive_seed,
    episode_seed,
    seed_everything,
)
from utils.visuals import save_animation


def generation_steps(history: list[dict]) -> list[int]:
    """Each record's generation counted over all searches so far (``--searches``): search k's
    generations follow the last generation of search k - 1."""
    steps, offset, search, last = [], 0, 0, 0
    for h in history:
        if h.get("search", 0) != search:
            offset, search = offset + last, h.get("search", 0)
        last = h["generation"]
        steps.append(offset + last)
    return steps


def plot_learning_curve(history: list[dict], path: Path, dream: bool, env: str) -> None:
    """Evaluation returns of the CMA-ES mean and the generation's best, the best fitness and (with
    --confirm-episodes) each would-be best's mean over the evaluation and confirmation tracks, as a PNG
    (with the paper's score where there is one)."""

    steps = generation_steps(history)

    def series(key: str) -> tuple[list[int], list[float]]:
        """(generations counted over all searches, values) of the records that have ``key``."""
        rows = [(x, h) for x, h in zip(steps, history, strict=True) if key in h]
        return [x for x, _ in rows], [h[key] for _, h in rows]

    fitness = "best dream fitness" if dream else "best fitness (training episodes)"
    curves_png(
        {
            "CMA-ES mean, evaluation episodes": series("eval_mean"),
            "best candidate, evaluation episodes": series("eval_best"),
            fitness: series("best"),
            "would-be best, evaluation + confirmation episodes": series("eval_confirmed"),
        },
        path,
        "controller return per generation",
        reference=get_env_spec(env).reference_returns,
    )


class DreamFitness:
    """``--dream``: candidates scored inside M's dream, all pop x samples dreams as one batch.

    All candidates of a generation start from the same ``n_samples`` real latents (as they drive the same
    tracks in the real env); the draws come from streams of (seed, generation) alone.
    """

    def __init__(self, args, controller: ControllerConfig, env: EnvSpec) -> None:
        self.device = resolve_device(args.device)
        self.cell, _ = load_dream_cell(args.logdir, self.device)
        self.mu, self.frame_offsets = load_start_latents(args.logdir)
        if self.mu.shape[1] != self.cell.latent:
            raise UserError(f"the latent cache has {self.mu.shape[1]} dims, M expects {self.cell.latent}")
        self.vae, _ = load_vae(args.logdir, self.device)
        self.args, self.controller, self.squash = args, controller, env.squash
        self.steps = args.dream_steps or env.max_episode_steps
        self.survival = not env.reward_head
        numerics = resolve_numerics(args.dream_precision, "contiguous", self.device)
        self.matmul_dtype = numerics.dtype  # None: float32

    def _dream(self, seed: int, *keys: int) -> tuple[Dream, np.random.Generator]:
        rng = np.random.default_rng(derive_seed(seed, DREAM_EPISODES, *keys))
        gen = torch.Generator(device=self.device).manual_seed(derive_seed(seed, DREAM_EPISODES, *keys, 1))
        dream = Dream(
            self.cell, self.args.temperature, self.args.dream_done, gen, self.survival, self.matmul_dtype
        )
        return dream, rng

    def _run(self, params: np.ndarray, n: int, seed: int, keys: tuple[int, ...], record: list | None = None):
        dream, rng = self._dream(seed, *keys)
        starts = start_latents(self.mu, self.frame_offsets, n, rng, self.args.dream_start).to(self.device)
        controllers = ControllerBatch(self.controller, params, self.device, starts.dtype)
        return dream_returns(
            dream, controllers, self.squash, starts.repeat(len(params) // n, 1), self.steps, record
        )

    def fitness(self, candidates: np.ndarray, generation: int, seed: int) -> np.ndarray:
        """(C, P) candidates -> (C, n_samples) dream returns, from the streams of the search's ``seed``."""
        n, c = self.args.n_samples, len(candidates)
        keys = (TRAIN_EPISODES, generation)
        returns, _ = self._run(np.repeat(np.asarray(candidates, np.float32), n, axis=0), n, seed, keys)
        return returns.cpu().numpy().reshape(c, n)

    def save_animation(self, params: np.ndarray, path: Path) -> None:
        """One dream of controller ``params`` (P,) decoded by V, 3x enlarged, as a GIF."""
        record: list = []
        _, lengths = self._run(
            np.asarray(params, np.float32)[None], 1, self.args.seed, (EVAL_EPISODES, 0), record
        )
        z = torch.cat([r[0] for r in record[: int(lengths[0])]])
        frames = decode_latents(self.vae, z)
        save_animation(list(frames.repeat(3, axis=1).repeat(3, axis=2)), path, fps=25)


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--logdir", type=Path, default=Path("exp_dir"), help="experiment directory")
    parser.add_argument(
        "--noreload",
        action="store_true",
        help="start a new search instead of resuming (the previous ctrl/best.tar is kept as "
        "ctrl/best.before-noreload.tar)",
    )
    parser.add_argument(
        "--from-best",
        action="store_true",
        help="on an exported agent (ctrl/search.tar, no checkpoint): instead of continuing its search, start "
        "a new one whose mean is ctrl/best.tar's controller, with step size --sigma; the best, its score, "
        "the history and the generation count go on (a rerun resumes it like any run)",
    )
    parser.add_argument(
        "--start-from",
        type=Path,
        default=None,
        help="a new search's CMA-ES mean is this controller checkpoint (another run's ctrl/best.tar on the "
        "same V and M, or scripts/probe_socnav.py --save-c's fit), evaluated first as generation 0 "
        "(default: zeros); with --searches, every search starts there",
    )
    parser.add_argument("--n-samples", type=positive_int, default=4, help="episodes per candidate")
    parser.add_argument("--pop-size", type=positive_int, default=16, help="CMA-ES population size")
    parser.add_argument("--sigma", type=positive_float, default=0.1, help="CMA-ES initial step size")
    parser.add_argument(
        "--generations",
        type=positive_int,
        default=100,
        help="generations of each search (a resumed run counts those already done)",
    )
    parser.add_argument(
        "--searches",
        type=positive_int,
        default=1,
        help="independent searches one after the other, search k from seed --seed + k, each for "
        "--generations; best.tar is the best of all, judged on the same evaluation tracks",
    )
    parser.add_argument(
        "--target-return",
        type=float,
        default=None,
        help="stop once an evaluation reaches this mean return (default: the env's: 950 for CarRacing; "
        "none for games that run every generation, such as Doom)",
    )
    parser.add_argument("--eval-every", type=positive_int, default=5, help="generations between evaluations")
    parser.add_argument(
        "--eval-episodes", type=positive_int, default=16, help="fixed tracks of each evaluation"
    )
    parser.add_argument(
        "--confirm-episodes",
        type=nonnegative_int,
        default=0,
        help="before a controller that beat the best on the evaluation tracks replaces it, drive it on this "
        "many more tracks and compare its mean over all of them (0: the evaluation tracks decide); the "
        "best of many evaluations on the same few tracks is flattered by their noise",
    )
    parser.add_argument(
        "--negative-cutoff",
        type=nonnegative_int,
        default=0,
        help="end a training episode after this many consecutive negative-reward steps "
        "(0: off); evaluations always run full episodes",
    )
    parser.add_argument(
        "--train-max-steps",
        type=positive_int,
        default=None,
        help="length cap of training episodes only (default: --max-steps); evaluations still run "
        "--max-steps, so a short cap trades fitness on the end of the lap for cheaper generations",
    )
    parser.add_argument(
        "--weight-penalty",
        type=nonnegative_float,
        default=0.0,
        help="fitness = mean return - this x mean(w^2) of the candidate (the paper's Doom runs: 0.01)",
    )
    parser.add_argument(
        "--display",
        action="store_true",
        help="show the newest best controller driving in a window (xvfb-run on headless machines)",
    )
    add_driving_flags(parser)
    dream = parser.add_argument_group("training inside M's dream")
    dream.add_argument(
        "--dream",
        action="store_true",
        help="score candidates inside M's dream (M's reward head, or the frames survived where the env's "
        "reward is survival); evaluations stay in the real env",
    )
    add_temperature_flag(dream, "the dream C is trained in")
    dream.add_argument(
        "--dream-steps",
        type=positive_int,
        default=None,
        help="dream episode length cap (default: the env's cap)",
    )
    dream.add_argument(
        "--dream-done",
        choices=DONE_MODES,
        default="threshold",
        help="a dream ends when M's termination probability is > 0.5 (threshold) or on a Bernoulli draw",
    )
    dream.add_argument(
        "--dream-precision",
        choices=PRECISIONS,
        default="auto",
        help="type of M's large matrix products in the dream (state and outputs stay fp32); auto: bf16 "
        "where the hardware has it natively (about 2x faster), else fp32",
    )
    dream.add_argument(
        "--dream-start",
        choices=START_MODES,
        default="first",
        help="dreams start from the first frame of a random rollout of the latent cache, or any frame of one",
    )
    return parser


def evaluate(
    pool: EpisodePool,
    candidates: np.ndarray,
    seeds: list[int],
    desc: str,
    negative_cutoff: int = 0,
    max_steps: int = 0,
) -> np.ndarray:
    """(N, P) controller vectors on the same ``seeds`` -> (N, len(seeds)) returns.

    ``negative_cutoff`` and ``max_steps`` are the training episodes' cut-offs (0: none).
    """
    episodes = [
        Episode(c * len(seeds) + s, candidates[c], seeds[s], negative_cutoff, max_steps)
        for c in range(len(candidates))
        for s in range(len(seeds))
    ]
    with tqdm(total=len(episodes), desc=desc, unit="episode", dynamic_ncols=True, leave=False) as bar:
        results = pool.evaluate(episodes, on_result=lambda r: bar.update(1))
    returns = np.array([results[e.task_id].episode_return for e in episodes])
    return returns.reshape(len(candidates), len(seeds))


def check_same_tracks(state: dict, args, path: Path, env: EnvSpec) -> None:
    """A resumed or continued search compares new controllers with its best score, measured on the
    evaluation (and confirmation) tracks of its own --seed, with its episode cap, renderer and z: other
    flags would compare scores measured otherwise. Unset flags count as the env's defaults."""
    before = state.get("args", {})
    defaults = {"max_steps": env.max_episode_steps, "renderer": env.default_renderer, "z_mode": "mu"}
    for flag in ("seed", "eval_episodes", "confirm_episodes", "max_steps", "renderer", "z_mode"):
        if flag not in before:
            continue
        held, now = before[flag], getattr(args, flag)
        if flag in defaults:
            held, now = held or defaults[flag], now or defaults[flag]
        if held != now:
            name = "--" + flag.replace("_", "-")
            raise UserError(
                f"{path} was searched with {name} {held}, with which its best score was measured; pass "
                f"{name} {held} to go on with it (or --noreload)"
            )


def check_from_best(state: dict | None, state_path: Path | None, logdir: Logdir, args) -> None:
    """--from-best starts its search on an exported agent; a rerun resumes the search it started (the
    checkpoint's flags say so: a checkpoint written without --from-best is another search)."""
    if args.noreload:
        raise UserError("--from-best goes on from an exported agent's best.tar: drop --noreload")
    if state_path is None:
        raise UserError(
            f"--from-best needs an exported agent: {logdir.search_state} not found "
            "(scripts/export_pretrained.py makes one)"
        )
    if state_path == logdir.checkpoint("ctrl") and not state.get("args", {}).get("from_best"):
        raise UserError(
            f"{state_path} is a search of this logdir's own; --from-best starts one only on an exported "
            "agent (ctrl/search.tar and no checkpoint): drop the flag to resume it"
        )
    if not logdir.best("ctrl").is_file():
        raise UserError(f"--from-best: {logdir.best('ctrl')} not found")


def start_mean(args, state: dict | None, state_path: Path | None, own: bool, dim: int) -> np.ndarray | None:
    """--start-from's controller as a flat vector (None: zeros). The flag starts new searches only: a
    rerun resumes the search it started (the checkpoint's flags say so, and it keeps the start itself,
    whatever the file holds since), an existing search of another start is never silently resumed under
    it, and an exported agent's search (``own`` False) is continued without the flag."""
    path = args.start_from
    if state is not None and not own:
        if path is not None:
            raise UserError(
                f"--start-from starts a new search, and {state_path} holds an exported one to continue: drop "
                "the flag to continue it, or add --noreload for a new one (the best controller is kept aside)"
            )
        return None
    if state is not None:
        held = state.get("args", {}).get("start_from")
        if held != (None if path is None else str(path)):
            flag = f"--start-from {held}" if held else "no --start-from"
            raise UserError(
                f"{state_path} is a search started with {flag}; rerun with {flag} to go on with it, or add "
                "--noreload for a new search (the best controller is kept aside)"
            )
        if "start" in state:
            return state["start"].numpy()
    if path is None:
        return None
    mean, config, _ = load_controller_file(path)
    if config.units:
        raise UserError(
            f"--start-from {path}: a C with a hidden layer of {config.units} units ({config.vector_size:,} "
            "parameters, too many for CMA-ES's covariance) is fitted, not searched: drive it with "
            "test_controller.py, or start from a linear C"
        )
    if config.vector_size != dim:
        raise UserError(
            f"--start-from {path}: a controller of {config.vector_size} parameters, this V and M need {dim}"
        )
    return mean


def target_return(args, env: EnvSpec) -> float:
    """The evaluated return that ends the search: --target-return, else the env's (inf: none)."""
    target = args.target_return if args.target_return is not None else env.target_return
    return math.inf if target is None else float(target)


def main(args) -> dict:
    """Run the search; returns a summary (generations done, best score, history). One run at a time per
    logdir (a second one stops at once, naming the first)."""
    with exclusive(Logdir(args.logdir).stage("ctrl"), f"the controller stage of {args.logdir}"):
        return search(args)


@dataclass
class SearchState:
    """Where the search stands: what each generation reads and updates, and the checkpoint keeps.

    ``search_index`` is the search under way (--searches); ``best_search`` the one that found best.tar;
    ``winner`` that search's final CMA-ES state in plain tensors once it has ended (an export ships it, so
    that continuing an agent continues the search that found it; ~1.5 MB in every later checkpoint against
    ~19 MB pickled); ``from_best`` the generation after which a --from-best search started.
    """

    es: Any
    generation: int = 0
    best_score: float = -math.inf
    history: list[dict] = field(default_factory=list)
    search_index: int = 0
    best_search: int | None = None
    winner: dict | None = None
    from_best: int | None = None
    start: np.ndarray | None = None  # --start-from's controller, every new search's mean (None: zeros)

    def checkpoint(self, args, dim: int, controller: ControllerConfig) -> dict:
        """What ``ctrl/checkpoint.tar`` holds after a generation (a rerun resumes from it exactly)."""
        return {
            "stage": "ctrl",
            "cma": pickle.dumps(self.es),
            "generation": self.generation,
            "best_score": self.best_score,
            "history": self.history,
            "args": args_record(args),
            "dim": dim,
            "controller": controller.to_dict(),
            "best_search": self.best_search,
            **({"winner": self.winner} if self.winner is not None else {}),
            **({"from_best": self.from_best} if self.from_best is not None else {}),
            **({"start": torch.from_numpy(self.start)} if self.start is not None else {}),
        }


def start_search(args, state: dict | None, state_path: Path | None, logdir: Logdir, dim: int) -> SearchState:
    """The search to run: the run's own resumed (its checkpoint), an exported agent's continued, a new one
    centred on an exported best (--from-best), or a new one (the best it replaces kept aside)."""
    checkpoint_path, best_path = logdir.checkpoint("ctrl"), logdir.best("ctrl")
    start = start_mean(args, state, state_path, state_path == checkpoint_path, dim)
    if state is None:
        if best_path.is_file():  # a new search starts with no best; the old one is kept, never deleted
            os.replace(best_path, logdir.previous_best)
            print(f"a new search: the previous best controller is kept as {logdir.previous_best}")
        return SearchState(new_search(dim, args.pop_size, args.sigma, args.seed, mean=start), start=start)
    # --searches: the one under way is the last record's (every checkpoint follows a record)
    search_index = state["history"][-1].get("search", 0) if state["history"] else 0
    if state.get("dim", dim) != dim:
        raise UserError(
            f"{state_path} searches {state['dim']} parameters, this V and M need {dim}; use --noreload"
        )
    st = SearchState(
        None,
        generation=state["generation"],
        best_score=state["best_score"],
        history=state["history"],
        search_index=search_index,
        best_search=state.get("best_search", search_index if state_path != checkpoint_path else None),
        winner=state.get("winner"),  # an export has none
        from_best=state.get("from_best"),
        start=start,
    )
    if state_path == checkpoint_path:  # the run's own search
        st.es = resume_search(state["cma"])
        print(f"resuming the search after generation {state['generation']}", end=" ")
    elif args.from_best:  # a new search centred on the exported best (check_from_best: it exists)
        mean, _, _ = load_controller(args.logdir)
        done = state["generation"]
        st.es = new_search(dim, args.pop_size, args.sigma, args.seed + search_index, mean=mean, stream=done)
        st.from_best = done
        st.best_search = search_index  # the search under way is centred on the best: an export ships it
        print(f"a new search from {best_path} (step size {args.sigma}) after generation {done}", end=" ")
    else:  # an exported agent's search, plain tensors only (experiment/search.py): never unpickled
        if "search" not in state:
            raise UserError(f"{state_path} holds no search state; re-export the agent, or use --noreload")
        st.es = continue_search(state["search"], args.pop_size, args.seed + search_index)
        print(f"continuing the exported search {state_path} after generation {state['generation']}", end=" ")
    print(f"(best evaluated return {st.best_score:.1f})")
    return st


def next_search(st: SearchState, args, dim: int) -> None:
    """--searches: the search under way has run its generations; keep its final state if it found the
    best, and start the next one from seed --seed + its index."""
    if st.best_search == st.search_index:
        st.winner = {"search": st.search_index, "generation": st.generation, "state": portable_state(st.es)}
    st.search_index, st.generation = st.search_index + 1, 0
    st.es = new_search(dim, args.pop_size, args.sigma, args.seed + st.search_index, mean=st.start)
    print(f"search {st.search_index + 1} of {args.searches}, seed {args.seed + st.search_index}")


SOURCES = ("cma_mean", "best_candidate")  # what an evaluation after a generation drives


@dataclass(frozen=True)
class Judge:
    """Evaluation of a generation's CMA-ES mean and best candidate on the fixed evaluation tracks, and
    of a challenger of the best on the confirmation tracks; a new best goes to ``best_path``."""

    pool: EpisodePool
    eval_seeds: list[int]
    confirm_seeds: list[int]
    best_path: Path
    controller: ControllerConfig
    z_mode: str

    def __call__(
        self, st: SearchState, pair: np.ndarray, record: dict, sources: tuple[str, ...] = SOURCES
    ) -> str:
        """Evaluate ``pair`` (CMA mean, best candidate; or the one controller a --start-from search starts
        from, ``sources`` naming each) after generation ``st.generation``; fills ``record``, updates
        ``st``'s best, returns the summary line's part."""
        generation = st.generation
        eval_returns = evaluate(self.pool, pair, self.eval_seeds, f"evaluation {generation}")
        scores = eval_returns.mean(axis=1)
        record.update(eval_mean=float(scores[0]), eval_mean_std=float(eval_returns[0].std()))
        line = f" | eval: CMA mean {scores[0]:7.1f}"
        if len(pair) > 1:
            record["eval_best"] = float(scores[1])
            line += f", best candidate {scores[1]:7.1f}"
        pick = int(np.argmax(scores))
        picked = eval_returns[pick]
        if scores[pick] > st.best_score and self.confirm_seeds:  # a new best? More tracks decide
            more = evaluate(
                self.pool, pair[pick : pick + 1], self.confirm_seeds, f"confirmation {generation}"
            )
            picked = np.concatenate([picked, more[0]])
            record["eval_confirmed"] = float(picked.mean())
            line += f" | on {len(picked)} tracks {picked.mean():7.1f}"
        if picked.mean() > st.best_score:
            st.best_score = float(picked.mean())
            save_controller(
                self.best_path,
                pair[pick],
                self.controller,
                score=st.best_score,
                returns=picked.tolist(),
                generation=generation,
                source=sources[pick],
                z_mode=self.z_mode,  # what C saw of V: the test and --policy controller drive it the same way
            )
            st.best_search = st.search_index
            line += " | new best"
        return line


def log_generation(writer, history: list[dict], fitness: np.ndarray | None) -> None:
    """The last record's scalars in TensorBoard (steps counted over all searches) and a fitness histogram
    (none for generation 0 of a --start-from search, only evaluated)."""
    record, step = history[-1], generation_steps(history)[-1]
    for k, v in record.items():
        if k not in ("generation", "search"):
            tag = f"eval/{k[5:]}_return" if k.startswith("eval_") else f"train/{k}"
            writer.add_scalar(tag if k != "sigma" else "train/sigma", v, step)
    if fitness is not None:
        writer.add_histogram("train/fitness", fitness, step)
    writer.flush()


def search(args) -> dict:
    seed_everything(args.seed)
    devices = worker_devices(args.device)
    logdir = Logdir(args.logdir)
    out_dir = logdir.stage("ctrl")
    checkpoint_path, best_path = logdir.checkpoint("ctrl"), logdir.best("ctrl")
    # A rerun resumes the run's own search; an exported agent (no checkpoint) continues its shipped one.
    state, state_path = None, None
    if not args.noreload:
        state_path = next((p for p in (checkpoint_path, logdir.search_state) if p.is_file()), None)
    if state_path is not None:
        state = check_stage(load_checkpoint(state_path), "ctrl", state_path)
    if args.from_best:
        check_from_best(state, state_path, logdir, args)
    # C's shape: a resumed search keeps its own; a new one reads the env's spec.
    controller = ControllerConfig.from_dict(state["controller"]) if state and "controller" in state else None
    spec = load_agent_spec(args.logdir, controller)
    env = get_env_spec(spec.env)
    if state is not None:
        check_same_tracks(state, args, state_path, env)
    settings = episode_settings(args, env)
    dream = DreamFitness(args, spec.controller, env) if args.dream else None
    dim = spec.controller.vector_size
    st = start_search(args, state, state_path, logdir, dim)
    save_args(args, out_dir)
    writer = make_writer(out_dir)
    eval_seeds = [episode_seed(args.seed, EVAL_EPISODES, i) for i in range(args.eval_episodes)]
    # Tracks of --confirm-episodes: the evaluation's namespace, after its own tracks.
    confirm_seeds = [
        episode_seed(args.seed, EVAL_EPISODES, args.eval_episodes + i) for i in range(args.confirm_episodes)
    ]
    display = Display(spec, settings, seed=args.seed) if args.display else None
    target = target_return(args, env)
    reached = st.best_score >= target
    try:
        with make_pool(
            args.backend,
            args.ray_address,
            spec,
            settings,
            args.max_workers,
            args.envs_per_worker,
            devices,
            args.worker_timeout,
        ) as pool:
            judge = Judge(pool, eval_seeds, confirm_seeds, best_path, spec.controller, settings.z_mode)
            if st.start is not None and not st.history:  # generation 0: where --start-from starts
                record = {"generation": 0, "search": 0}
                line = judge(st, st.start[None], record, sources=("start_from",))
                st.history.append(record)
                log_generation(writer, st.history, None)
                save_checkpoint(st.checkpoint(args, dim, spec.controller), checkpoint_path)
                print(f"generation    0 | --start-from {args.start_from}{line}", flush=True)
                reached = st.best_score >= target
            while not reached:
                check_stop()
                if st.generation >= args.generations:  # this search is done: the next one, if any
                    if st.search_index + 1 >= args.searches:
                        break
                    next_search(st, args, dim)
                search_seed = args.seed + st.search_index
                start = time.perf_counter()
                candidates = np.asarray(st.es.ask())
                if dream is not None:  # fitness in M's dream; train/* below are then dream returns
                    returns = dream.fitness(candidates, st.generation, search_seed)
                else:
                    seeds = [
                        episode_seed(search_seed, TRAIN_EPISODES, st.generation, s)
                        for s in range(args.n_samples)
                    ]
                    returns = evaluate(
                        pool,
                        candidates,
                        seeds,
                        f"generation {st.generation + 1}",
                        args.negative_cutoff,
                        args.train_max_steps or 0,
                    )
                # The paper's penalty on large weights (its Doom runs: 0.01 mean(w^2)); 0 by default.
                fitness = returns.mean(axis=1) - args.weight_penalty * (candidates**2).mean(axis=1)
                st.es.tell(list(candidates), list(-fitness))  # CMA-ES minimises
                st.generation += 1
                best = int(np.argmax(fitness))
                record = {
                    "generation": st.generation,
                    "search": st.search_index,
                    "best": float(fitness[best]),
                    "mean": float(fitness.mean()),
                    "worst": float(fitness.min()),
                    "sigma": float(st.es.sigma),
                }
                kind = "dream fitness" if dream is not None else "fitness"
                line = f"search {st.search_index + 1} | " if args.searches > 1 else ""
                line += (
                    f"generation {st.generation:4d} | {kind} best {record['best']:7.1f} "
                    f"mean {record['mean']:7.1f} worst {record['worst']:7.1f} | sigma {st.es.sigma:.4f}"
                )
                if display is not None:
                    display.show(candidates[best])
                if st.generation % args.eval_every == 0 or st.generation == args.generations:
                    pair = np.stack([np.asarray(st.es.mean), candidates[best]])
                    line += judge(st, pair, record)
                    if dream is not None:
                        dream.save_animation(pair[0], out_dir / f"dream_gen_{st.generation:03d}.gif")
                    reached = st.best_score >= target
                st.history.append(record)
                if "eval_mean" in record:
                    plot_learning_curve(
                        st.history, out_dir / "learning_curve.png", dream is not None, env.name
                    )
                log_generation(writer, st.history, fitness)
                save_checkpoint(st.checkpoint(args, dim, spec.controller), checkpoint_path)
                print(f"{line} | {time.perf_counter() - start:.1f} s", flush=True)
    except WorkerError as err:
        raise UserError(
            f"{err} ({st.generation} generations are saved in {checkpoint_path}: "
            f"rerun the same command to resume)"
        ) from None
    finally:
        writer.close()
        if display is not None:
            display.close()
    if reached:
        print(f"target return {target:g} reached: best evaluated return {st.best_score:.1f}")
    print(
        f"best controller: {best_path} (evaluated return {st.best_score:.1f} on "
        f"{args.eval_episodes + args.confirm_episodes} episodes)"
    )
    return {"generation": st.generation, "best_score": st.best_score, "history": st.history}


if __name__ == "__main__":
    run(main, build_parser())
