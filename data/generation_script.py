"""Generate rollouts of an env with a random policy, one compressed .npz per episode.

Usage:
    python data/generation_script.py --rollouts 1000 --rootdir datasets/carracing --threads 8
    python data/generation_script.py --env carracing-discrete --rollouts 100 --rootdir datasets/discrete

Every file records its env (``--env``, a spec of envs/) and preprocessing; later stages read them from
the files and checkpoints, never from a flag. The random policies, renderers, preprocessings and the
episode cap are the env's (see its spec). A game whose spec has state labels (SocNavGym) records them
beside every frame: the targets of V's state head (trainvae.py --label-weight), never C's inputs.

Rollout i's track and actions derive from (--seed, i) alone, so the same seed gives the same files
whatever --threads is. Files appear atomically; rerunning into the same --rootdir skips finished
rollouts. The settings that make the files (env, seed, policy, cap, preprocessing, renderer, and the
driving agent and noise of --policy controller) are recorded in <rootdir>/generation.json: a rerun
with other settings stops with one line instead of mixing two kinds of rollouts in one directory
(--rollouts may change: a larger number adds rollouts). See data/rollouts.py for the file layout and
its time alignment.

Iterative training: --policy controller --logdir exp_dir drives <logdir>/ctrl/best.tar (with V and M
from the logdir; see driving/controller_policy.py), adding --noise to its actions, so V and M can be
retrained on the states a good driver visits.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from tqdm import tqdm

from data.rollouts import Rollout, load_rollout, rollout_name, save_rollout
from driving.agent import AgentSpec
from driving.controller_policy import ControllerPolicy
from envs import DEFAULT_ENV, EnvSpec, available_envs, get_env_spec
from experiment.logdir import STAGES, Logdir, load_agent_parts, load_data_record
from utils.checkpoint import atomic_write, file_digest, load_json, remove_stale_temporaries
from utils.cli import (
    UserError,
    add_max_steps_flag,
    add_workers_flag,
    check_stop,
    make_parser,
    positive_int,
    run,
)
from utils.locking import exclusive
from utils.processes import worker_context, worker_init
from utils.ray_cluster import add_backend_flags, import_ray, init_ray
from utils.seeding import derive_seed


@dataclass(frozen=True)
class Job:
    """What every generation worker needs (the same for all rollouts of a run)."""

    rootdir: str
    env: str
    seed: int
    policy: str
    max_steps: int
    preprocessing: str
    renderer: str
    agent: AgentSpec | None = None  # --policy controller: the agent that drives ...
    params: np.ndarray | None = None  # ... with this controller,
    z_mode: str = "mu"  # ... seeing z as it was trained to
    noise: float = 0.0


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument(
        "--env",
        help=f"the game (a spec of envs/): {', '.join(available_envs())} (default: {DEFAULT_ENV}; with "
        "--policy controller, the game of --logdir)",
    )
    parser.add_argument("--rollouts", type=positive_int, default=1000, help="number of rollouts in total")
    parser.add_argument(
        "--rootdir",
        type=Path,
        default=Path("datasets/carracing"),
        help="directory the .npz files go to (created if missing)",
    )
    add_workers_flag(
        parser,
        "--threads",
        "rollout worker processes (with --backend ray: tasks, one per rollout; all the cluster's CPUs)",
    )
    parser.add_argument(
        "--policy",
        default=None,
        help="a random policy of the env (default: its first; CarRacing: brown, correlated and drivable, or "
        "white, i.i.d. uniform), one that reads the simulator's state (SocNavGym: goal-mix, half the "
        "episodes brownian, half noisy straight-to-the-goal) or controller (<logdir>/ctrl/best.tar, for "
        "iterative training)",
    )
    parser.add_argument(
        "--logdir", type=Path, default=None, help="experiment whose V, M and C drive --policy controller"
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=0.1,
        help="std of the Gaussian noise added to the controller's actions (then clipped), for exploration",
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed of tracks and policies")
    add_max_steps_flag(parser)
    parser.add_argument(
        "--preprocessing",
        default=None,
        help="frame transform, one of the env's (default: its first; CarRacing: crop84 drops the dashboard, "
        "as the paper; full keeps it)",
    )
    parser.add_argument(
        "--renderer",
        default=None,
        help="implementation of the env rendering the frames (default: the env's first; CarRacing: fast)",
    )
    add_backend_flags(parser)
    return parser


def generate_rollout(index: int, job: Job) -> tuple[int, int]:
    """Run rollout ``index`` and write it to ``job.rootdir``; returns (index, steps)."""
    env_spec = get_env_spec(job.env)
    env = env_spec.make_env(job.renderer, None, job.max_steps)
    try:
        track_seed = derive_seed(job.seed, index, 0)
        rng = np.random.default_rng(derive_seed(job.seed, index, 1))
        if job.policy == "controller":
            drive = ControllerPolicy(job.agent, job.params, rng, job.noise, job.z_mode)
            act = lambda t: drive(frames[-1])  # noqa: E731  C sees the frame it is acting on
        elif job.policy in env_spec.state_policies:
            policy = env_spec.state_policies[job.policy](rng, job.max_steps)
            act = lambda t: policy(env, t)  # noqa: E731
        else:
            actions = env_spec.policies[job.policy](rng, job.max_steps)
            act = lambda t: actions[t]  # noqa: E731
        obs, _ = env.reset(seed=track_seed)
        frames, actions_taken, rewards, terminals = [env_spec.preprocess(obs, job.preprocessing)], [], [], []
        # what the simulator's state says at each frame, for games whose spec says (None for the rest)
        label = env_spec.labels or (lambda env: None)
        labels = [label(env)]
        truncated = False
        for t in range(job.max_steps):
            action = act(t)
            obs, reward, terminated, truncated, _ = env.step(env_spec.to_env_action(action))
            labels.append(label(env))
            actions_taken.append(action)
            rewards.append(reward)
            terminals.append(terminated)
            if terminated or truncated:
                break
            frames.append(env_spec.preprocess(obs, job.preprocessing))
        rollout = Rollout(
            observations=np.stack(frames),
            actions=np.stack(actions_taken).astype(np.float32),
            rewards=np.asarray(rewards, np.float32),
            terminals=np.asarray(terminals, bool),
            final_observation=env_spec.preprocess(obs, job.preprocessing),
            truncated=bool(truncated),
            preprocessing=job.preprocessing,
            seed=job.seed,
            index=index,
            track_seed=track_seed,
            policy=job.policy,
            env=env_spec.name,
            labels=np.stack(labels) if env_spec.labels else None,
        )
        save_rollout(Path(job.rootdir) / rollout_name(index), rollout)
        return index, len(rollout)
    finally:
        env.close()


def generate_rollout_bytes(index: int, job: Job) -> tuple[int, int, bytes]:
    """:func:`generate_rollout` into a scratch directory; returns (index, steps, the file's bytes).

    What a Ray task runs: the file travels back to the driver, which writes it, so the nodes of a
    cluster need no shared file system.
    """
    with tempfile.TemporaryDirectory(prefix="rollout-") as scratch:
        _, n = generate_rollout(index, replace(job, rootdir=scratch))
        return index, n, (Path(scratch) / rollout_name(index)).read_bytes()


def generate_on_ray(todo: list[int], job: Job, address: str | None, record) -> None:
    """One Ray task per rollout index, a bounded number in flight; Ray re-runs the task of a lost
    worker or node (max_retries), and a rollout's file depends on its index alone."""
    ray = init_ray(address)
    task = ray.remote(num_cpus=1, max_retries=3)(generate_rollout_bytes)
    window = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    queue, in_flight = list(reversed(todo)), []
    try:
        while queue or in_flight:
            while queue and len(in_flight) < window:
                in_flight.append(task.remote(queue.pop(), job))
            ready, in_flight = ray.wait(in_flight, num_returns=1)
            index, n, data = ray.get(ready[0])
            atomic_write(Path(job.rootdir) / rollout_name(index), lambda f, data=data: f.write(data))
            record(index, n)
    except BaseException:
        for ref in in_flight:
            ray.cancel(ref, force=True)
        raise


def check_rootdir(rootdir: Path) -> None:
    """Create ``rootdir`` and prove it is writable, or raise a one-line error."""
    try:
        rootdir.mkdir(parents=True, exist_ok=True)
        probe = rootdir / ".write_probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UserError(
            f"--rootdir {rootdir} is not writable ({err.strerror}); choose another directory"
        ) from None


SETTINGS = "generation.json"
# Each recorded setting, as the flag that sets it.
SETTING_FLAGS = {
    "env": "--env",
    "seed": "--seed",
    "policy": "--policy",
    "max_steps": "--max-steps",
    "preprocessing": "--preprocessing",
    "renderer": "--renderer",
    "noise": "--noise",
    "agent": "--logdir",
}


def job_settings(job: Job, logdir: Path | None) -> dict:
    """What makes a rollout's file besides its index: recorded in <rootdir>/generation.json. The driving
    agent of --policy controller is named by its three checkpoints' digests (a retrained one is another)."""
    settings = {
        k: getattr(job, k) for k in ("env", "seed", "policy", "max_steps", "preprocessing", "renderer")
    }
    if job.policy == "controller":
        digests = [file_digest(Logdir(logdir).best(stage)) for stage in STAGES]
        settings |= {"noise": job.noise, "agent": "-".join(d[:12] for d in digests)}
    return settings


def check_settings(rootdir: Path, settings: dict) -> None:
    """Refuse, in one line, a run whose settings differ from those of the rollouts --rootdir holds (its
    generation.json, or for a directory made before the record, what its first file records); then
    record them."""
    path = rootdir / SETTINGS
    held = None
    if path.is_file():
        hint = f"delete it to record this run's settings, if they are those of the rollouts in {rootdir}"
        held = load_json(path, hint)
        if not isinstance(held, dict):
            raise UserError(f"{path} is damaged (not a record of settings): {hint}")
    else:
        existing = sorted(rootdir.glob("rollout_*.npz"))
        if existing:
            first = load_rollout(existing[0])
            held = {
                "env": first.env,
                "seed": first.seed,
                "policy": first.policy,
                "preprocessing": first.preprocessing,
            }
    for key, value in (held or {}).items():
        if key in settings and settings[key] != value:
            made = "driven by another agent" if key == "agent" else f"made with {SETTING_FLAGS[key]} {value}"
            shown = "" if key == "agent" else f", not {settings[key]}"
            raise UserError(
                f"--rootdir {rootdir} holds rollouts {made}{shown}: use another --rootdir, or the "
                f"settings it was made with"
            )
    if held != settings:
        text = json.dumps(settings, indent=1)
        atomic_write(path, lambda f: f.write(text.encode()))


def make_job(args, env: EnvSpec) -> Job:
    """The run's job from the flags, each checked against the env's spec (one line when it has no such
    policy, renderer or preprocessing)."""
    policy = args.policy or env.default_policy
    if policy not in (*env.policies, *env.state_policies, "controller"):
        names = ", ".join((*env.policies, *env.state_policies))
        raise UserError(f"--policy {policy}: {env.name} has {names} or controller")
    renderer = args.renderer or env.default_renderer
    if renderer not in env.renderers:
        raise UserError(f"--renderer {renderer}: {env.name} has {', '.join(env.renderers)}")
    preprocessing = args.preprocessing or env.default_preprocessing
    if preprocessing not in env.preprocessings:
        raise UserError(f"--preprocessing {preprocessing}: {env.name} has {', '.join(env.preprocessings)}")
    job = Job(
        str(args.rootdir),
        env.name,
        args.seed,
        policy,
        args.max_steps or env.max_episode_steps,
        preprocessing,
        renderer,
    )
    if policy != "controller":
        return job
    if args.logdir is None:
        raise UserError("--policy controller needs --logdir, the experiment whose controller drives")
    if args.noise < 0:
        raise UserError(f"--noise must be >= 0, got {args.noise}")
    agent, params, ckpt = load_agent_parts(args.logdir)  # fails here, in one line, when a stage is missing
    if agent.env != env.name:
        raise UserError(f"--logdir {args.logdir} drives {agent.env}, not --env {env.name}")
    if agent.preprocessing != preprocessing:
        print(f"--policy controller: frames preprocessed as V was trained ({agent.preprocessing})")
    z_mode = ckpt.get("z_mode", "mu")
    return replace(
        job, preprocessing=agent.preprocessing, agent=agent, params=params, z_mode=z_mode, noise=args.noise
    )


def game(args) -> str:
    """--env, else the game of --logdir's V for --policy controller, else the default game."""
    if args.env is None and args.policy == "controller" and args.logdir is not None:
        return load_data_record(args.logdir).env
    return args.env or DEFAULT_ENV


def main(args) -> list[int]:
    """Generate the missing rollouts of ``range(args.rollouts)``; returns the indices written."""
    if args.backend == "ray":
        import_ray()  # missing Ray is one line, before any work
    job = make_job(args, get_env_spec(game(args)))
    check_rootdir(args.rootdir)
    with exclusive(args.rootdir, f"rollout directory {args.rootdir}"):  # one generation run per directory
        check_settings(args.rootdir, job_settings(job, args.logdir))
        return generate(args, job)


def generate(args, job: Job) -> list[int]:
    """Write the missing rollouts of ``job`` (see :func:`main`)."""
    remove_stale_temporaries(args.rootdir)
    todo = [i for i in range(args.rollouts) if not (args.rootdir / rollout_name(i)).exists()]
    done = args.rollouts - len(todo)
    if done:
        print(f"{args.rootdir}: {done} of {args.rollouts} rollouts already there, generating {len(todo)}")
    if not todo:
        return []
    written, steps, start = [], 0, time.perf_counter()
    bar = tqdm(total=len(todo), desc="rollouts", unit="rollout", dynamic_ncols=True)

    def record(index: int, n: int) -> None:
        nonlocal steps
        written.append(index)
        steps += n
        bar.update(1)
        bar.set_postfix(steps_per_s=f"{steps / (time.perf_counter() - start):.0f}")

    try:
        if args.backend == "ray":
            generate_on_ray(todo, job, args.ray_address, record)
        elif args.threads == 1:
            for i in todo:
                record(*generate_rollout(i, job))
        else:
            # a fork server (utils.processes.worker_context): each worker starts clean (no inherited pygame or
            # Box2D state); a worker that dies makes the pool broken, which surfaces here instead of hanging.
            ctx = worker_context()
            pool = ProcessPoolExecutor(
                max_workers=min(args.threads, len(todo)),
                mp_context=ctx,
                initializer=worker_init,
                initargs=(os.getpid(),),
            )
            try:
                pending = {pool.submit(generate_rollout, i, job) for i in todo}
                while pending:
                    finished, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                    check_stop()
                    for fut in finished:
                        record(*fut.result())
                pool.shutdown()
            except BaseException:
                # Ctrl-C, SIGTERM or a failure: stop now, without waiting for the rollouts in progress
                # (their files were never renamed into place; a rerun makes them). A worker killed in the
                # middle of a write leaves its temporary: wait for the workers to end, then remove it.
                # The pool is shut down only then, and waited for: its threads (which feed the workers'
                # pipe) end before the run does, instead of racing the interpreter's exit with a write
                # to a closed pipe (an "OSError: Bad file descriptor" traceback after the last line).
                workers = list((getattr(pool, "_processes", None) or {}).values())  # the executor's own
                for process in workers:
                    process.kill()
                for process in workers:
                    process.join(timeout=10)
                pool.shutdown(wait=True, cancel_futures=True)
                remove_stale_temporaries(args.rootdir)
                raise
    except BrokenProcessPool as err:
        raise UserError(
            f"a generation worker died ({err}); {len(written)} rollouts were written, "
            f"rerun the same command to resume"
        ) from None
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    print(
        f"wrote {len(written)} rollouts ({steps} steps) to {args.rootdir} in {elapsed:.1f} s "
        f"({steps / max(elapsed, 1e-9):.0f} steps/s)"
    )
    return sorted(written)


if __name__ == "__main__":
    run(main, build_parser())
