"""The 2-core recipe (scripts/demo.py --preset budget) end to end at its smallest, its export, and the
shipped pretrained agent."""

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import test_controller
import traincontroller
import trainmdrnn
import trainvae
from data import generation_script
from data.rollouts import list_rollouts, load_rollout
from experiment.logdir import load_controller, load_data_record, load_mdrnn, load_vae
from scripts import demo, export_pretrained, probe_socnav
from scripts import dream as dream_script
from tests.conftest import copy_logdir, run_demo, write_synthetic_rollouts
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.cli import UserError
from utils.seeding import EVAL_EPISODES, derive_seed, episode_seed

ROOT = Path(__file__).resolve().parent.parent
PRETRAINED = ROOT / "pretrained" / "carracing"

# Size overrides only: every other knob (learning rates, sequence length, cut-offs, renderers) is the
# budget preset's own.
SMALLEST = [
    "--rollouts", "3", "--max-steps", "60", "--vae-epochs", "1", "--mdrnn-epochs", "1",
    "--generations", "2", "--pop-size", "4", "--n-samples", "2", "--train-max-steps", "30",
    "--eval-every", "1", "--eval-episodes", "2", "--confirm-episodes", "2", "--episode-steps", "50",
    "--test-episodes", "2",
]  # fmt: skip


def drive(logdir: Path, out: Path, episodes: int, steps: int, *flags: str) -> dict:
    parser = test_controller.build_parser()
    args = [
        "--logdir", str(logdir), "--out", str(out), "--episodes", str(episodes), "--max-steps", str(steps),
        "--max-workers", "2", *flags,
    ]  # fmt: skip
    return test_controller.main(parser.parse_args(args))


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory) -> Path:
    """The recipe at its smallest, as the preset runs it (two pipelines, the better one kept), with two
    searches from each pipeline's V and M (the layout the shipped agent came from): the CarRacing recipe's
    one end-to-end run, which exports and continued searches start from."""
    logdir = tmp_path_factory.mktemp("recipe") / "budget"
    run_demo("budget", logdir, *SMALLEST, "--searches", "2")
    return logdir


def test_budget_recipe_runs_every_stage(recipe_run):
    summary = json.loads((recipe_run / "stages.json").read_text())
    first = ["generate rollouts", "train V (VAE)", "train M (MDN-RNN)", "train C (CMA-ES)"]
    names = [f"{n} (pipeline {k})" for k in (0, 1) for n in first] + ["pick the best pipeline", "test C"]
    assert [s["stage"] for s in summary["stages"]] == names
    assert all(s["seconds"] > 0 for s in summary["stages"])
    knobs = summary["knobs"]
    for key in ("vae_lr", "seq_len", "negative_cutoff", "train_renderer", "mdrnn_batch", "vae_batch"):
        assert knobs[key] == demo.PRESETS["budget"][key]  # not overridden: the preset's own
    assert knobs["pipelines"] == 2 and knobs["searches"] == 2
    assert knobs["generations"] == 2 and knobs["test_episodes"] == 2
    ctrl_args = json.loads((recipe_run / "ctrl" / "args.json").read_text())
    assert ctrl_args["renderer"] == "approx" and ctrl_args["train_max_steps"] == 30
    test = summary["test"]
    assert test["episodes"] == 2 and test["renderer"] == "fast" and test["max_steps"] == 50
    assert (recipe_run / "drive.gif").stat().st_size > 1000
    assert (recipe_run / "ctrl" / "learning_curve.png").stat().st_size > 1000


def test_the_recipes_policy_makes_the_first_rounds_rollouts(tmp_path):
    """--policy (a recipe knob; empty: the env's first) is the first round's rollout policy, as
    generation_script.py parses it; a second round's rollouts stay the first round's agent's."""
    flags = ["--preset", "socnav", "--env", "socnav-ego", "--logdir", str(tmp_path), "--rounds", "2"]
    for extra, first in (([], None), (["--policy", "goal-mix"], "goal-mix")):
        plan = demo.stages(demo.resolve(demo.build_parser().parse_args([*flags, *extra])))
        generation = [argv for name, argv in plan if name.startswith("generate rollouts")]
        parsed = [SCRIPTS[argv[0]].build_parser().parse_args(argv[1:]) for argv in generation]
        assert [(g.env, g.policy) for g in parsed] == [("socnav-ego", first), ("socnav-ego", "controller")]


def test_two_rounds_retrain_on_rollouts_of_the_first_rounds_agent(tmp_path):
    """--rounds 2's plan, each stage parsed by its own script: round 0 is a whole run on its own rollouts;
    round 1 drives round 0's agent on new tracks, then trains V on both sets of rollouts, M on that V, and
    C, in the logdir the test reads. (Each stage runs for real in its own tests: generation with
    --policy controller in test_dream, the whole recipe in the pipelines test.)"""
    logdir = tmp_path / "budget"
    args = demo.resolve(
        demo.build_parser().parse_args(["--preset", "budget", "--logdir", str(logdir), "--rounds", "2"])
    )
    args.pipelines = 1
    plan = demo.stages(args)
    first = ["generate rollouts", "train V (VAE)", "train M (MDN-RNN)", "train C (CMA-ES)"]
    names = [f"{n} (round {r})" for r in (0, 1) for n in first] + ["test C"]
    assert [name for name, _ in plan] == names
    parsed = [SCRIPTS[argv[0]].build_parser().parse_args(argv[1:]) for _, argv in plan]
    gen0, vae0, mdrnn0, ctrl0, gen1, vae1, mdrnn1, ctrl1, test = parsed
    rollouts = logdir / "rollouts"
    assert (gen0.policy, gen0.rootdir, gen0.seed) == (None, rollouts / "round0", 0)  # the env's own: brown
    assert (gen1.policy, gen1.logdir, gen1.rootdir, gen1.seed) == (
        "controller",
        logdir / "round0",
        rollouts / "round1",
        1,
    )
    assert gen1.noise == args.round_noise > 0
    # New tracks: a rollout's track comes from its seed and index.
    assert not {derive_seed(0, i, 0) for i in range(1000)} & {derive_seed(1, i, 0) for i in range(1000)}
    assert (vae0.logdir, vae0.dataset) == (logdir / "round0", rollouts / "round0")
    assert (vae1.logdir, vae1.dataset) == (logdir, rollouts)  # both rounds' rollouts, found recursively
    assert (mdrnn0.logdir, ctrl0.logdir, mdrnn1.logdir, ctrl1.logdir, test.logdir) == (
        logdir / "round0",
        logdir / "round0",
        logdir,
        logdir,
        logdir,
    )
    assert vae0.seed == vae1.seed == ctrl0.seed == ctrl1.seed == 0
    write_synthetic_rollouts(rollouts / "round0", n=2)
    write_synthetic_rollouts(rollouts / "round1", n=2, start=2)
    assert [p.parent.name for p in list_rollouts(rollouts)] == ["round0"] * 2 + ["round1"] * 2


def test_pipelines_keep_the_one_that_drives_best_on_tracks_none_saw(recipe_run, tmp_path):
    logdir = copy_logdir(recipe_run, tmp_path / "budget")  # this test redoes the copy of the winner
    summary = json.loads((logdir / "stages.json").read_text())
    # Each pipeline is a whole run from its own seed: its own rollouts, V, M and C.
    for k in (0, 1):
        pipeline = logdir / f"pipeline{k}"
        assert {load_rollout(p).seed for p in (pipeline / "rollouts").glob("*.npz")} == {k}
        assert json.loads((pipeline / "ctrl" / "args.json").read_text())["seed"] == k
    vaes = [(logdir / f"pipeline{k}" / "vae" / "best.tar").read_bytes() for k in (0, 1)]
    assert vaes[0] != vaes[1]
    # Every C drove the same tracks, the evaluation tracks of seed 2, which neither pipeline evaluated on;
    # the recorded returns are those tracks' returns.
    pick = json.loads((logdir / demo.PICK_RESULTS).read_text())
    assert pick["tracks"] == {"seed": 2, "namespace": EVAL_EPISODES, "episodes": 2}
    seeds = [episode_seed(2, EVAL_EPISODES, i) for i in range(2)]
    for k, record in enumerate(pick["pipelines"]):
        assert record["logdir"] == f"pipeline{k}" and record["seed"] == k
        flags = ["--logdir", str(logdir / f"pipeline{k}"), "--max-steps", "50", "--max-workers", "2"]
        returns = test_controller.drive_agent(test_controller.build_parser().parse_args(flags), seeds)[0]
        assert returns.tolist() == record["returns"] and record["mean"] == pytest.approx(returns.mean())
    # The best mean wins; its V, M and C are copied into the logdir, which the test drove.
    assert pick["winner"] == int(np.argmax([p["mean"] for p in pick["pipelines"]]))
    winner = logdir / f"pipeline{pick['winner']}"
    for stage in ("vae", "mdrnn", "ctrl"):
        assert (logdir / stage / "best.tar").read_bytes() == (winner / stage / "best.tar").read_bytes()
    assert summary["test"]["episodes"] == 2 and (logdir / "ctrl" / "test_returns.json").is_file()
    # A copy cut short is redone from the recorded pick, without driving again.
    shutil.rmtree(logdir / "ctrl")
    args = demo.resolve(
        demo.build_parser().parse_args(["--preset", "budget", "--logdir", str(logdir), "--pipelines", "2"])
    )
    (logdir / demo.PICK_RESULTS).write_text(json.dumps({**pick, "winner": 1 - pick["winner"]}))
    demo.pick_pipeline(args)
    other = logdir / f"pipeline{1 - pick['winner']}"
    assert (logdir / "ctrl" / "best.tar").read_bytes() == (other / "ctrl" / "best.tar").read_bytes()
    # A logdir holds one layout: other --pipelines, or pipelines with rounds, get one line.
    args.pipelines = 1
    with pytest.raises(UserError, match="holds a run of 2 pipelines .*: rerun it with --pipelines 2"):
        demo.check_pipelines(args)
    args.logdir, args.pipelines, args.searches = logdir / "pipeline0", 2, 1  # a one-pipeline run
    # The hint names the searches the held run's C was started with, where they differ from this command's.
    one_pipeline = "one-pipeline run: resume it with --pipelines 1 --searches 2, or give --pipelines 2"
    with pytest.raises(UserError, match=one_pipeline):
        demo.check_pipelines(args)
    args.searches = 2
    with pytest.raises(UserError, match="resume it with --pipelines 1, or give --pipelines 2 a new --logdir"):
        demo.check_pipelines(args)
    args.logdir, args.rounds = tmp_path / "new", 2
    with pytest.raises(UserError, match="--rounds 2 and --pipelines 2 do not combine: add --pipelines 1"):
        demo.check_pipelines(args)


def test_watch_track_must_be_a_test_track(recipe_run, tmp_path):
    with pytest.raises(UserError, match="--watch-track 5: the test has tracks 0 to 1"):
        drive(recipe_run, tmp_path, 2, 20, "--watch-track", "5", "--record", str(tmp_path / "x.gif"))


def test_a_recipe_is_a_file_and_a_bad_one_is_one_line(tmp_path):
    """--preset takes a shipped recipe's name (recipes/<name>.toml) or a recipe file of one's own; a file
    with an unknown or a missing knob, or that is not TOML, is one line naming it."""
    text = (demo.RECIPES / "doom.toml").read_text()
    mine = tmp_path / "mine.toml"
    mine.write_text(text.replace("generations = 100", "generations = 7"))
    args = demo.resolve(demo.build_parser().parse_args(["--preset", str(mine)]))
    assert args.generations == 7 and args.env == "doom-takecover" and args.temperature == 1.15
    for bad, message in (
        (text + "lr = 0.1\n", "unknown knob 'lr'"),
        (text.replace("seq_len = 100\n", ""), "missing knob.s. seq_len"),
        (text + "generations = 3\n", "cannot be read"),  # a knob set twice is not TOML
    ):
        mine.write_text(bad)
        with pytest.raises(UserError, match=f"recipe {mine}: {message}"):
            demo.resolve(demo.build_parser().parse_args(["--preset", str(mine)]))
    with pytest.raises(UserError, match="--preset budgett: neither a recipe .budget, demo, doom"):
        demo.resolve(demo.build_parser().parse_args(["--preset", "budgett"]))


def test_a_flag_overrides_the_preset():
    args = demo.resolve(demo.build_parser().parse_args(["--preset", "budget", "--vae-lr", "0.5"]))
    assert args.vae_lr == 0.5 and args.rollouts == demo.PRESETS["budget"]["rollouts"]
    demo_args = demo.resolve(demo.build_parser().parse_args([]))
    assert demo_args.preset == "demo" and demo_args.pretrained_episodes > 0
    commands = dict(demo.stages(demo_args))
    assert "--logdir" in commands["drive the pretrained agent"]
    # V's mask: the recipe's empty knob leaves trainvae.py its game's first; a name reaches it.
    for extra, salient in (([], None), (["--vae-salient", "graded"], "graded")):
        args = demo.resolve(demo.build_parser().parse_args(["--preset", "socnav", *extra]))
        vae = trainvae.build_parser().parse_args(dict(demo.stages(args))["train V (VAE)"][1:])
        assert vae.salient == salient and vae.salient_weight == demo.PRESETS["socnav"]["vae_salient_weight"]


def test_imitation_is_refused_at_once_where_the_env_has_no_go_to_goal(tmp_path):
    args = demo.build_parser().parse_args(
        ["--preset", "budget", "--imitate", "150", "--logdir", str(tmp_path)]
    )
    with pytest.raises(UserError, match="--imitate 150: carracing-repeat2 has no go-to-goal reference"):
        demo.main(args)
    args = demo.build_parser().parse_args(["--preset", "socnav", "--units", "64", "--logdir", str(tmp_path)])
    args.imitate = 0
    with pytest.raises(UserError, match="--units 64: a C with a hidden layer is fitted, not searched: add"):
        demo.main(args)
    assert not any(tmp_path.iterdir())  # before any stage ran


def test_a_fitted_network_is_the_agents_c_and_no_search_follows():
    """--units N: the fit writes the agent's ctrl/best.tar itself (to the teacher asked for), and no
    CMA-ES stage comes after it; a linear fit is the search's start, as before."""
    logdir = Path("/tmp/runs/net")
    base = ["--preset", "socnav", "--logdir", str(logdir), "--imitate", "150"]
    net = dict(
        demo.stages(
            demo.resolve(demo.build_parser().parse_args([*base, "--units", "64", "--teacher", "orca"]))
        )
    )
    fit = net["fit C to orca"]
    assert (
        fit[fit.index("--save-c") + 1] == str(logdir / "ctrl" / "best.tar") and "train C (CMA-ES)" not in net
    )
    assert fit[fit.index("--units") + 1] == "64" and fit[fit.index("--teacher") + 1] == "orca"
    linear = ["--units", "0", "--teacher", "go-to-goal"]
    linear = dict(demo.stages(demo.resolve(demo.build_parser().parse_args([*base, *linear]))))
    fit, search = linear["fit C to go-to-goal"], linear["train C (CMA-ES)"]
    assert fit[fit.index("--save-c") + 1] == search[search.index("--start-from") + 1]


SCRIPTS = {
    "data/generation_script.py": generation_script,
    "trainvae.py": trainvae,
    "trainmdrnn.py": trainmdrnn,
    "traincontroller.py": traincontroller,
    "test_controller.py": test_controller,
    "scripts/probe_socnav.py": probe_socnav,
}


@pytest.mark.parametrize("preset", sorted(demo.PRESETS))
@pytest.mark.parametrize(
    "shape",
    [
        [],
        ["--rounds", "2"],
        ["--pipelines", "2"],
        ["--dream", "1", "--random-baseline", "1", "--doom-episodes", "2"],
        ["--imitate", "150", "--dagger", "2"],
        ["--imitate", "150", "--dagger", "2", "--units", "64", "--teacher", "orca"],
    ],
)
def test_every_stage_is_an_argv_its_script_accepts(preset, shape):
    """Every stage's command is an argv list that its script's own parser accepts (a misspelt or removed
    flag fails here, not an hour into a recipe), and a logdir with spaces stays one argument of each."""
    logdir = Path("/tmp/my runs/a b")
    args = demo.build_parser().parse_args(["--preset", preset, "--logdir", str(logdir), *shape])
    args = demo.resolve(args)
    if args.rounds > 1 and args.pipelines > 1:
        pytest.skip("--rounds 2 and --pipelines do not combine")
    for name, argv in demo.stages(args):
        if callable(argv):
            continue
        parsed = SCRIPTS[argv[0]].build_parser().parse_args(argv[1:])
        paths = [a for a in argv if a.startswith("/tmp/my")]
        assert paths and all(Path(a).is_relative_to(logdir) for a in paths), (name, argv)
        assert any(isinstance(v, Path) and v.is_relative_to(logdir) for v in vars(parsed).values()), name


def test_export_keeps_the_acting_weights_exact(recipe_run, tmp_path):
    out = tmp_path / "exported"
    sizes = export_pretrained.main(
        export_pretrained.build_parser().parse_args(["--logdir", str(recipe_run), "--out", str(out)])
    )
    assert "run/test_returns.json" in sizes and "run/learning_curve.png" in sizes
    acting = {
        "vae": set(load_vae(recipe_run)[0].acting_state_dict()),
        "mdrnn": set(load_mdrnn(recipe_run)[0].acting_state_dict()),
    }
    for stage, exact in acting.items():
        full = load_checkpoint(recipe_run / stage / "best.tar")["model"]
        small = load_checkpoint(out / stage / "best.tar")
        assert "optimizer" not in small
        for name, tensor in small["model"].items():
            if name in exact:
                assert tensor.dtype == torch.float32 and torch.equal(tensor, full[name])
            else:
                assert tensor.dtype == torch.float16
                torch.testing.assert_close(tensor.float(), full[name], atol=1e-3, rtol=1e-3)
    # The exported agent drives exactly as the run's.
    run_stats = drive(recipe_run, tmp_path / "a", 3, 40)
    export_stats = drive(out, tmp_path / "b", 3, 40)
    assert export_stats["returns"] == run_stats["returns"]
    # Dreams start from the exported first-frame latents: the latent cache is not shipped.
    assert not (out / "mdrnn" / "latents.npz").exists() and (out / "mdrnn" / "start_latents.npz").is_file()
    gif = tmp_path / "dream.gif"
    dream_script.main(
        dream_script.build_parser().parse_args(
            ["--logdir", str(out), "--out", str(gif), "--steps", "5", "--controller"]
        )
    )
    assert gif.stat().st_size > 1000
    with pytest.raises(UserError, match="--out must differ"):
        export_pretrained.main(
            export_pretrained.build_parser().parse_args(
                ["--logdir", str(recipe_run), "--out", str(recipe_run)]
            )
        )


def test_export_never_mixes_with_or_loses_what_out_held(recipe_run, tmp_path):
    """--out is required; an --out holding files is refused (kept as it was) unless --force, which replaces
    it whole, so a stale checkpoint or record of another agent never rides along."""
    parse = export_pretrained.build_parser().parse_args
    with pytest.raises(SystemExit):
        parse(["--logdir", str(recipe_run)])
    out = tmp_path / "exported"
    first = export_pretrained.main(parse(["--logdir", str(recipe_run), "--out", str(out)]))
    stale = {out / "ctrl" / "checkpoint.tar": b"another search", out / "run" / "notes.json": b"another agent"}
    for path, data in stale.items():
        path.write_bytes(data)
    with pytest.raises(UserError, match="already holds files.*--force"):
        export_pretrained.main(parse(["--logdir", str(recipe_run), "--out", str(out)]))
    assert all(path.read_bytes() == data for path, data in stale.items())
    again = export_pretrained.main(parse(["--logdir", str(recipe_run), "--out", str(out), "--force"]))
    assert again.keys() == first.keys() and not any(path.exists() for path in stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # no half-built or set-aside copy left
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        export_pretrained.main(parse(["--logdir", str(recipe_run), "--out", str(tmp_path / "file")]))


@pytest.mark.skipif(not (PRETRAINED / "ctrl" / "best.tar").is_file(), reason="no shipped weights")
def test_pretrained_agent_loads_and_drives(tmp_path):
    total = sum(p.stat().st_size for p in PRETRAINED.rglob("*") if p.is_file())
    assert total < 16e6
    stats = drive(PRETRAINED, tmp_path, 2, 300)
    assert all(np.isfinite(stats["returns"])) and stats["steps"] == [300, 300]
    # The same 300 steps with an all-zero controller (straight ahead at half throttle, which leaves
    # the road at the first bend): the trained agent must be far ahead on both tracks.
    zero = tmp_path / "zero"
    export_pretrained.main(
        export_pretrained.build_parser().parse_args(["--logdir", str(PRETRAINED), "--out", str(zero)])
    )
    # An export of the export keeps the shipped search.
    assert (zero / "ctrl" / "search.tar").read_bytes() == (PRETRAINED / "ctrl" / "search.tar").read_bytes()
    ckpt = load_checkpoint(zero / "ctrl" / "best.tar")
    ckpt["model"] = {k: torch.zeros_like(v) for k, v in ckpt["model"].items()}
    torch.save(ckpt, zero / "ctrl" / "best.tar")
    idle = drive(zero, tmp_path / "idle", 2, 300)
    assert min(stats["returns"]) > max(idle["returns"]) + 50
    # The shipped record is the 100-track test of these weights.
    record = json.loads((PRETRAINED / "run" / "test_returns.json").read_text())
    assert record["episodes"] == 100 and len(record["returns"]) == 100


def strings(value):
    """Every string in a checkpoint's nested dicts and lists."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from strings(v)
    elif isinstance(value, str):
        yield value


def test_an_export_names_no_directory_of_the_machine(recipe_run, tmp_path):
    out = tmp_path / "exported"
    export_pretrained.main(
        export_pretrained.build_parser().parse_args(["--logdir", str(recipe_run), "--out", str(out)])
    )
    # The run's own records hold absolute paths (its logdir, its rollouts); the export's none.
    assert Path(load_data_record(recipe_run).rootdir).is_absolute()
    for path in sorted(out.rglob("*.tar")):
        assert not [s for s in strings(load_checkpoint(path)) if Path(s).is_absolute()], path
    assert load_data_record(out).rootdir == "rollouts"
    assert load_checkpoint(out / "ctrl" / "search.tar")["args"]["logdir"] == "."
    # The relative record is read against the logdir: with the rollouts beside the export, M retrains
    # from them with no --dataset.
    shutil.copytree(load_data_record(recipe_run).rootdir, out / "rollouts")  # the kept pipeline's
    history = trainmdrnn.main(
        trainmdrnn.build_parser().parse_args(["--logdir", str(out), "--epochs", "1", "--noreload"])
    )
    assert len(history) == 1


def test_an_exported_search_continues(recipe_run, tmp_path, capsys):
    out = tmp_path / "exported"
    sizes = export_pretrained.main(
        export_pretrained.build_parser().parse_args(["--logdir", str(recipe_run), "--out", str(out)])
    )
    assert "ctrl/search.tar" in sizes and "ctrl/checkpoint.tar" not in sizes
    run_state = torch.load(recipe_run / "ctrl" / "checkpoint.tar", weights_only=True)
    shipped = load_checkpoint(out / "ctrl" / "search.tar")  # weights-only: no pickled object inside
    assert "cma" not in shipped and shipped["generation"] == run_state["generation"] == 2
    # This run has two searches: the export carries the one that found best.tar, as it ended.
    found = run_state["best_search"]
    assert found in (0, 1) and shipped["history"][-1]["search"] == found
    assert shipped["history"] == [h for h in run_state["history"] if h["search"] <= found]
    if found == 0:
        ended = run_state["winner"]["state"]["mean"].numpy()
    else:
        ended = pickle.loads(run_state["cma"]).mean
    np.testing.assert_array_equal(shipped["search"]["mean"].numpy(), ended)
    best_before = (out / "ctrl" / "best.tar").read_bytes()
    # traincontroller.py on the export goes on from generation 2 with the run's own settings.
    ctrl = json.loads((recipe_run / "ctrl" / "args.json").read_text())
    flags = ("pop_size", "n_samples", "max_steps", "train_max_steps", "eval_every", "eval_episodes")
    flags += ("confirm_episodes", "renderer", "seed")
    argv = ["--logdir", str(out), "--generations", "3", "--max-workers", "2"]
    for name in flags:
        argv += [f"--{name.replace('_', '-')}", str(ctrl[name])]
    summary = traincontroller.main(traincontroller.build_parser().parse_args(argv))
    assert "continuing the exported search" in capsys.readouterr().out
    # That search goes on (generation 3).
    done = len(shipped["history"])
    assert summary["generation"] == 3 and len(summary["history"]) == done + 1
    assert summary["history"][:done] == shipped["history"]
    assert summary["history"][-1]["search"] == found
    assert summary["best_score"] >= shipped["best_score"]
    if summary["best_score"] == shipped["best_score"]:  # no new best: the shipped one stays
        assert (out / "ctrl" / "best.tar").read_bytes() == best_before
    # From now on the continued run resumes from its own checkpoint.
    assert (out / "ctrl" / "checkpoint.tar").is_file()


@pytest.mark.skipif(not (PRETRAINED / "ctrl" / "search.tar").is_file(), reason="no shipped search state")
def test_the_shipped_search_continues(tmp_path, capsys):
    logdir = tmp_path / "more"
    shutil.copytree(PRETRAINED, logdir)
    shipped = load_checkpoint(PRETRAINED / "ctrl" / "search.tar")
    done = shipped["generation"]
    # One more generation at toy scale (other flags are allowed: the search distribution carries over) ...
    argv = ["--logdir", str(logdir), "--generations", str(done + 1), "--pop-size", "4", "--n-samples", "1"]
    argv += ["--max-workers", "2"]
    # ... but the best's score was measured on the run's evaluation tracks, with its episode cap, renderer
    # and z: the same ones decide. Episodes of 20 steps keep it small: the copy's record says so.
    save_checkpoint({**shipped, "args": {**shipped["args"], "max_steps": 20}}, logdir / "ctrl" / "search.tar")
    for name in ("seed", "eval_episodes", "confirm_episodes", "renderer", "max_steps"):
        argv += [f"--{name.replace('_', '-')}", str({**shipped["args"], "max_steps": 20}[name])]
    summary = traincontroller.main(traincontroller.build_parser().parse_args(argv))
    assert "continuing the exported search" in capsys.readouterr().out
    # (the history holds every search of the run: more records than this search's generations)
    records = len(shipped["history"])
    assert summary["generation"] == done + 1 and summary["history"][:records] == shipped["history"]
    assert len(summary["history"]) == records + 1
    # 20-step evaluations cannot beat the shipped score: the shipped controller stays the best.
    assert summary["best_score"] == shipped["best_score"]
    assert (logdir / "ctrl" / "best.tar").read_bytes() == (PRETRAINED / "ctrl" / "best.tar").read_bytes()
    es = pickle.loads(load_checkpoint(logdir / "ctrl" / "checkpoint.tar")["cma"])  # our own run's state
    assert es.countiter == shipped["search"]["iterations"] + 1
    # It went on from the shipped step size (a new search would start at --sigma 0.1).
    assert abs(np.log(es.sigma / shipped["search"]["sigma"])) < np.log(1.5) and es.sigma < 0.08


def continue_export(logdir: Path, run: Path, *flags: str) -> dict:
    """traincontroller.py on ``logdir`` with the flags of the run in ``run`` (its args.json) but ``flags``."""
    ctrl = json.loads((run / "ctrl" / "args.json").read_text())
    argv = ["--logdir", str(logdir), "--eval-every", "1", "--max-workers", "2"]
    same = ("pop_size", "n_samples", "max_steps", "train_max_steps", "renderer", "seed")
    for name in (*same, "eval_episodes", "confirm_episodes"):
        argv += [f"--{name.replace('_', '-')}", str(ctrl[name])]
    return traincontroller.main(traincontroller.build_parser().parse_args([*argv, *flags]))


def test_from_best_starts_a_search_at_the_exported_best(recipe_run, tmp_path, capsys):
    out = tmp_path / "exported"
    export_pretrained.main(
        export_pretrained.build_parser().parse_args(["--logdir", str(recipe_run), "--out", str(out)])
    )
    shipped = load_checkpoint(out / "ctrl" / "search.tar")
    best = load_checkpoint(out / "ctrl" / "best.tar")
    best_vector = load_controller(out)[0]
    # A step size of 1e-9: every candidate is the best's controller, so the mean stays there.
    summary = continue_export(out, recipe_run, "--from-best", "--sigma", "1e-9", "--generations", "3")
    assert f"a new search from {out / 'ctrl' / 'best.tar'} (step size 1e-09) after generation 2" in (
        capsys.readouterr().out
    )
    records = len(shipped["history"])  # both searches of the recipe's run
    assert summary["generation"] == 3 and summary["history"][:records] == shipped["history"]
    assert len(summary["history"]) == records + 1 and summary["history"][-1]["generation"] == 3
    state = load_checkpoint(out / "ctrl" / "checkpoint.tar")
    assert state["from_best"] == 2 and state["best_search"] == shipped["history"][-1]["search"]
    es = pickle.loads(state["cma"])
    np.testing.assert_allclose(es.mean, best_vector, atol=1e-6)
    assert es.sigma < 1e-6 < shipped["search"]["sigma"]  # a new search, not the shipped one continued
    # Its candidates were the best's controller: a generation's best fitness is the best's on the
    # generation's tracks, and no evaluation can beat its own score (the best stays).
    record = summary["history"][-1]
    assert record["best"] == pytest.approx(record["worst"], abs=1e-3)
    assert summary["best_score"] == best["score"]
    # The same command again resumes that search (a killed run resumes; it does not restart).
    summary = continue_export(out, recipe_run, "--from-best", "--sigma", "1e-9", "--generations", "4")
    assert "resuming the search after generation 3" in capsys.readouterr().out
    assert summary["generation"] == 4 and load_checkpoint(out / "ctrl" / "checkpoint.tar")["from_best"] == 2
    # An export of that run ships the search under way: the one centred on the best.
    again = tmp_path / "again"
    export_pretrained.main(
        export_pretrained.build_parser().parse_args(["--logdir", str(out), "--out", str(again)])
    )
    continued = load_checkpoint(again / "ctrl" / "search.tar")
    np.testing.assert_allclose(continued["search"]["mean"].numpy(), best_vector, atol=1e-6)
    assert continued["from_best"] == 2 and continued["generation"] == 4


def test_from_best_and_other_tracks_are_refused_with_one_line(recipe_run, tmp_path):
    out = tmp_path / "exported"
    export_pretrained.main(
        export_pretrained.build_parser().parse_args(["--logdir", str(recipe_run), "--out", str(out)])
    )
    with pytest.raises(
        UserError, match="--from-best goes on from an exported agent's best.tar: drop --noreload"
    ):
        continue_export(out, recipe_run, "--from-best", "--noreload", "--generations", "3")
    with pytest.raises(
        UserError, match="search of this logdir's own; --from-best starts one only on an export"
    ):
        continue_export(recipe_run, recipe_run, "--from-best", "--generations", "3")
    # Another --seed (or number of evaluation tracks) would compare scores from other tracks.
    with pytest.raises(UserError, match="was searched with --seed 0, .* pass --seed 0 to go on"):
        continue_export(out, recipe_run, "--seed", "1", "--generations", "3")
    with pytest.raises(UserError, match="was searched with --eval-episodes 2, .* pass --eval-episodes 2"):
        continue_export(out, recipe_run, "--eval-episodes", "3", "--generations", "3")
    # So would another episode cap, renderer or z (unset flags count as the env's defaults).
    ctrl = json.loads((recipe_run / "ctrl" / "args.json").read_text())
    for flag, held, other in (("--max-steps", ctrl["max_steps"], 31), ("--renderer", "approx", "fast"),
                              ("--z-mode", "mu", "sample")):  # fmt: skip
        with pytest.raises(UserError, match=f"was searched with {flag} {held}, .* pass {flag} {held} to go"):
            continue_export(out, recipe_run, flag, str(other), "--generations", "3")
    (out / "ctrl" / "search.tar").unlink()
    with pytest.raises(UserError, match="--from-best needs an exported agent: .*search.tar not found"):
        continue_export(out, recipe_run, "--from-best", "--generations", "3")
    assert not (out / "ctrl" / "checkpoint.tar").exists()  # nothing started
    # An export that went on with its own search has a search of its own: --from-best does not restart it.
    again = tmp_path / "again"
    export_pretrained.main(
        export_pretrained.build_parser().parse_args(["--logdir", str(recipe_run), "--out", str(again)])
    )
    continue_export(again, recipe_run, "--generations", "3")
    with pytest.raises(UserError, match="search of this logdir's own; --from-best starts one only on"):
        continue_export(again, recipe_run, "--from-best", "--generations", "4")


def test_round_v_keep_copies_round_0s_v_and_m_reads_both_rounds(pipeline_logdir, tmp_path, capsys):
    """--round-v keep: round 1 trains no V but copies round 0's into the logdir (whole: a killed copy is
    redone, a rerun keeps what is there), and M, run for real, reads both rounds' rollouts through it."""
    logdir = tmp_path / "run"
    args = demo.resolve(
        demo.build_parser().parse_args(
            ["--preset", "budget", "--logdir", str(logdir), "--rounds", "2", "--round-v", "keep"]
        )
    )
    args.pipelines = 1
    plan = demo.stages(args)
    first = ["generate rollouts", "train V (VAE)", "train M (MDN-RNN)", "train C (CMA-ES)"]
    rest = ["generate rollouts", "keep round 0's V", "train M (MDN-RNN)", "train C (CMA-ES)"]
    names = [f"{n} (round 0)" for n in first] + [f"{n} (round 1)" for n in rest] + ["test C"]
    assert [name for name, _ in plan] == names
    mdrnn0, mdrnn1 = (SCRIPTS[plan[k][1][0]].build_parser().parse_args(plan[k][1][1:]) for k in (2, 6))
    assert (mdrnn0.logdir, mdrnn0.dataset) == (logdir / "round0", None)  # V's own rollouts
    assert (mdrnn1.logdir, mdrnn1.dataset) == (logdir, logdir / "rollouts")  # both rounds'
    copy_logdir(pipeline_logdir, logdir / "round0")
    source = load_data_record(pipeline_logdir).rootdir
    for r in (0, 1):
        shutil.copytree(source, logdir / "rollouts" / f"round{r}", ignore=shutil.ignore_patterns(".*"))
    (logdir / ".vae.copying").mkdir(parents=True)  # left by a killed copy
    (logdir / ".vae.copying" / "junk").write_text("half a copy")
    plan[5][1]()
    assert not (logdir / ".vae.copying").exists()
    for name in ("best.tar", "checkpoint.tar"):
        assert (logdir / "vae" / name).read_bytes() == (logdir / "round0" / "vae" / name).read_bytes()
    (logdir / "vae" / "kept").write_text("")
    plan[5][1]()  # a rerun keeps the copy
    assert (logdir / "vae" / "kept").exists()
    argv = plan[6][1][1:] + ["--epochs", "1", "--max-batches", "2", "--device", "cpu", "--nosamples"]
    trainmdrnn.main(trainmdrnn.build_parser().parse_args(argv))
    n = len(list_rollouts(source))
    assert f"latents: {2 * n} carracing rollouts" in capsys.readouterr().out
