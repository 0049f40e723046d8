"""Evolve C, the linear controller on [z, h], with CMA-ES in the real CarRacing environment.

Usage:
    python traincontroller.py --logdir exp_dir --n-samples 4 --pop-size 4 --target-return 950 --display

Needs <logdir>/vae/best.tar and <logdir>/mdrnn/best.tar. Every generation each candidate drives
--n-samples tracks (the same tracks for all candidates of a generation); its fitness is the mean
return. Every --eval-every generations the CMA-ES mean and the generation's best are evaluated on
--eval-episodes fixed tracks, and the best evaluated controller goes to <logdir>/ctrl/best.tar.
The whole CMA-ES state is saved every generation to <logdir>/ctrl/checkpoint.tar; a rerun resumes the
search unless --noreload.

With --dream, candidates are scored inside M's dream instead (models/dream.py: --dream-steps steps at
temperature --temperature, from real first frames of the latent cache, all candidates as one batched
tensor computation); the evaluations still run in the real env, so the log shows both. Each evaluation
also writes <logdir>/ctrl/dream_gen_XXX.gif, a dream of the CMA mean decoded by V.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from tqdm import tqdm

from envs import DEFAULT_RENDERER, MAX_EPISODE_STEPS, RENDERERS
from models.controller import Controller, controller_vector_size
from models.dream import add_dream_flags, make_dream
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.cli import make_parser, nonnegative_int, positive_float, positive_int, run
from utils.device import resolve_device
from utils.engine import WorkerPool, make_pool
from utils.logging import make_writer, save_args
from utils.ray_backend import add_backend_flags
from utils.rollout import Z_MODES, Episode, EpisodeSettings, load_world_model
from utils.seeding import EVAL_EPISODES, TRAIN_EPISODES, derive_seed, episode_seed, seed_everything


def add_engine_flags(parser, exact_only: bool = False) -> None:
    """Flags shared with test_controller.py: how episodes are driven and by whom.

    ``exact_only`` leaves out the approximate renderer: measurements run on stock pixels.
    """
    parser.add_argument(
        "--max-workers",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="rollout worker processes (Ray actors with --backend ray)",
    )
    parser.add_argument(
        "--envs-per-worker",
        type=positive_int,
        default=8,
        help="episodes a worker drives in lock-step, batching V and M over them; results are "
        "reproducible for a fixed value whatever --max-workers is",
    )
    parser.add_argument(
        "--max-steps",
        type=positive_int,
        default=MAX_EPISODE_STEPS,
        help="episode length cap (CarRacing's own limit is 1000)",
    )
    parser.add_argument(
        "--renderer",
        choices=[r for r in RENDERERS if not (exact_only and r == "approx")],
        default=DEFAULT_RENDERER,
        help="CarRacing implementation (fast renders exactly the stock pixels)",
    )
    parser.add_argument(
        "--z-mode", choices=Z_MODES, default="mu", help="C and M see the encoder mean (mu) or a sample of z"
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="device of V and M in the workers: cpu, cuda (workers spread over all visible "
        "GPUs), cuda:N or auto; small batches usually run best on cpu",
    )
    parser.add_argument(
        "--worker-timeout",
        type=positive_float,
        default=600.0,
        help="seconds without any finished episode before the run fails as hung",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of tracks, CMA-ES and workers")
    add_backend_flags(parser)


def worker_devices(spec: str) -> list[str]:
    """``cuda`` (or ``auto`` with GPUs) spreads workers over every visible GPU; else one device."""
    device = resolve_device(spec)
    if device.type == "cuda" and device.index is None:
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return [str(device)]


def episode_settings(args, bundle: dict) -> EpisodeSettings:
    """How episodes are driven, from the engine flags and V's preprocessing."""
    return EpisodeSettings(
        max_steps=args.max_steps,
        renderer=args.renderer,
        preprocessing=bundle["preprocessing"],
        z_mode=args.z_mode,
    )


def plot_learning_curve(history: list[dict], path: Path, dream: bool) -> None:
    """Evaluation returns of the CMA-ES mean and the generation's best, with the best fitness, as a PNG."""
    from utils.plots import curves_png

    evals = [h for h in history if "eval_mean" in h]
    fitness = "best dream fitness" if dream else "best fitness (training tracks)"
    curves_png(
        {
            "CMA-ES mean, evaluation tracks": (
                [h["generation"] for h in evals],
                [h["eval_mean"] for h in evals],
            ),
            "best candidate, evaluation tracks": (
                [h["generation"] for h in evals],
                [h["eval_best"] for h in evals],
            ),
            fitness: ([h["generation"] for h in history], [h["best"] for h in history]),
        },
        path,
        "controller return per generation",
    )


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--logdir", type=Path, default=Path("exp_dir"), help="experiment directory")
    parser.add_argument("--noreload", action="store_true", help="start a new search instead of resuming")
    parser.add_argument("--n-samples", type=positive_int, default=4, help="episodes per candidate")
    parser.add_argument("--pop-size", type=positive_int, default=16, help="CMA-ES population size")
    parser.add_argument("--sigma", type=positive_float, default=0.1, help="CMA-ES initial step size")
    parser.add_argument(
        "--generations",
        type=positive_int,
        default=100,
        help="generations in total (a resumed run counts those already done)",
    )
    parser.add_argument(
        "--target-return", type=float, default=950.0, help="stop once an evaluation reaches this mean return"
    )
    parser.add_argument("--eval-every", type=positive_int, default=5, help="generations between evaluations")
    parser.add_argument(
        "--eval-episodes", type=positive_int, default=16, help="fixed tracks of each evaluation"
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
        "--display",
        action="store_true",
        help="show the newest best controller driving in a window (xvfb-run on headless machines)",
    )
    add_engine_flags(parser)
    add_dream_flags(parser)
    return parser


def new_search(dim: int, args) -> cma.CMAEvolutionStrategy:  # noqa: F821
    import cma

    # Its own random stream, pickled with it, so a resumed search draws what an uninterrupted one would.
    rng = np.random.RandomState(derive_seed(args.seed, 0xC3A))
    opts = {
        "popsize": args.pop_size,
        "seed": derive_seed(args.seed, 0xC3A) + 1,
        "verbose": -9,
        "randn": rng.randn,
    }
    return cma.CMAEvolutionStrategy(np.zeros(dim), args.sigma, opts)


def evaluate(
    pool: WorkerPool,
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


def save_best(
    path: Path,
    params: np.ndarray,
    latent: int,
    hidden: int,
    score: float,
    returns: np.ndarray,
    generation: int,
    source: str,
) -> None:
    controller = Controller(latent, hidden)
    controller.load_vector(params)
    save_checkpoint(
        {
            "model": controller.state_dict(),
            "model_config": controller.config,
            "score": score,
            "returns": returns.tolist(),
            "generation": generation,
            "source": source,
        },
        path,
    )


def main(args) -> dict:
    """Run the search; returns a summary (generations done, best score, history)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cma warns that matplotlib is missing: plotting is not used
        import cma  # noqa: F401
    seed_everything(args.seed)
    devices = worker_devices(args.device)
    bundle = load_world_model(args.logdir)
    dream, vae = make_dream(args)  # (None, None) without --dream
    latent, hidden = bundle["vae_config"]["latent"], bundle["mdrnn_config"]["hidden"]
    dim = controller_vector_size(latent, hidden)
    out_dir = args.logdir / "ctrl"
    checkpoint_path, best_path = out_dir / "checkpoint.tar", out_dir / "best.tar"

    generation, best_score, history = 0, -np.inf, []
    if checkpoint_path.is_file() and not args.noreload:
        state = load_checkpoint(checkpoint_path)
        es = pickle.loads(state["cma"])
        generation, best_score, history = state["generation"], state["best_score"], state["history"]
        print(f"resuming the search after generation {generation} (best evaluated return {best_score:.1f})")
    else:
        es = new_search(dim, args)
        if best_path.is_file():
            best_path.unlink()  # a new search starts with no best
    save_args(args, out_dir)
    writer = make_writer(out_dir)
    settings = episode_settings(args, bundle)
    eval_seeds = [episode_seed(args.seed, EVAL_EPISODES, i) for i in range(args.eval_episodes)]
    display = None
    if args.display:
        from utils.display import Display

        display = Display(bundle, settings, seed=args.seed)
    reached = best_score >= args.target_return
    try:
        with make_pool(
            args.backend,
            args.ray_address,
            bundle,
            settings,
            args.max_workers,
            args.envs_per_worker,
            devices,
            args.worker_timeout,
        ) as pool:
            while generation < args.generations and not reached:
                start = time.perf_counter()
                candidates = np.asarray(es.ask())
                seeds = [
                    episode_seed(args.seed, TRAIN_EPISODES, generation, s) for s in range(args.n_samples)
                ]
                if dream is not None:  # fitness in M's dream; train/* below are then dream returns
                    returns, _ = dream.fitness(candidates, args.n_samples, generation)
                else:
                    returns = evaluate(
                        pool,
                        candidates,
                        seeds,
                        f"generation {generation + 1}",
                        args.negative_cutoff,
                        args.train_max_steps or 0,
                    )
                fitness = returns.mean(axis=1)
                es.tell(list(candidates), list(-fitness))  # CMA-ES minimises
                generation += 1
                best = int(np.argmax(fitness))
                record = {
                    "generation": generation,
                    "best": float(fitness[best]),
                    "mean": float(fitness.mean()),
                    "worst": float(fitness.min()),
                    "sigma": float(es.sigma),
                }
                kind = "dream fitness" if dream is not None else "fitness"
                line = (
                    f"generation {generation:4d} | {kind} best {record['best']:7.1f} "
                    f"mean {record['mean']:7.1f} worst {record['worst']:7.1f} | sigma {es.sigma:.4f}"
                )
                if display is not None:
                    display.show(candidates[best])
                if generation % args.eval_every == 0 or generation == args.generations:
                    pair = np.stack([np.asarray(es.mean), candidates[best]])
                    eval_returns = evaluate(pool, pair, eval_seeds, f"evaluation {generation}")
                    scores = eval_returns.mean(axis=1)
                    record.update(
                        eval_mean=float(scores[0]),
                        eval_best=float(scores[1]),
                        eval_mean_std=float(eval_returns[0].std()),
                    )
                    line += f" | eval: CMA mean {scores[0]:7.1f}, best candidate {scores[1]:7.1f}"
                    if dream is not None:
                        dream.save_animation(pair[0], vae, out_dir / f"dream_gen_{generation:03d}.gif")
                    pick = int(np.argmax(scores))
                    if scores[pick] > best_score:
                        best_score = float(scores[pick])
                        save_best(
                            best_path,
                            pair[pick],
                            latent,
                            hidden,
                            best_score,
                            eval_returns[pick],
                            generation,
                            ("cma_mean", "best_candidate")[pick],
                        )
                        line += " | new best"
                    reached = best_score >= args.target_return
                history.append(record)
                if "eval_mean" in record:
                    plot_learning_curve(history, out_dir / "learning_curve.png", dream is not None)
                for k, v in record.items():
                    if k != "generation":
                        tag = f"eval/{k[5:]}_return" if k.startswith("eval_") else f"train/{k}"
                        writer.add_scalar(tag if k != "sigma" else "train/sigma", v, generation)
                writer.add_histogram("train/fitness", fitness, generation)
                writer.flush()
                save_checkpoint(
                    {
                        "cma": pickle.dumps(es),
                        "generation": generation,
                        "best_score": best_score,
                        "history": history,
                        "args": vars(args),
                        "dim": dim,
                    },
                    checkpoint_path,
                )
                print(f"{line} | {time.perf_counter() - start:.1f} s", flush=True)
    finally:
        writer.close()
        if display is not None:
            display.close()
    if reached:
        print(f"target return {args.target_return} reached: best evaluated return {best_score:.1f}")
    print(f"best controller: {best_path} (evaluated return {best_score:.1f} on {args.eval_episodes} tracks)")
    return {"generation": generation, "best_score": best_score, "history": history}


if __name__ == "__main__":
    run(main, build_parser())
