"""The README's results table, made from the test records it quotes.

Every row of ours is computed from ``test_returns.json`` records (``test_controller.py``'s output):
the mean and std of all their episodes pooled, or, for a recipe run on several seeds, the mean of the
runs' means. The other rows are published figures (their sources: the paper and the papers and ports
named). The README keeps the table between the two marker lines below; ``--check`` says whether it
matches what the records give (``tests/test_docs.py`` runs it).

Usage:
    python scripts/results_table.py            # print the table
    python scripts/results_table.py --write    # write it into README.md
    python scripts/results_table.py --check    # exit 1 when README.md's table differs
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from utils.checkpoint import atomic_write  # noqa: E402

BEGIN, END = "<!-- results table: scripts/results_table.py -->", "<!-- end of results table -->"


@dataclass(frozen=True)
class Ours:
    """A row measured here: ``records`` pooled (``per_run=False``) or averaged run by run."""

    game: str
    agent: str
    episodes: str
    records: tuple[str, ...]
    per_run: bool = False
    machine: str = ""
    rates: bool = False  # lead with the share of episodes reaching the goal and colliding (SocNavGym)

    def score(self) -> str:
        runs = [json.loads((ROOT / r).read_text()) for r in self.records]
        if self.rates:
            outcomes = [o for r in runs for o in r["outcomes"]]
            returns = np.concatenate([np.asarray(r["returns"], dtype=np.float64) for r in runs])
            share = {o: 100 * outcomes.count(o) / len(outcomes) for o in ("success", "collision")}
            return (
                f"goal {share['success']:.0f}%, collision {share['collision']:.0f}% "
                f"(return {returns.mean():.1f} +- {returns.std():.1f})"
            )
        if self.per_run:
            means = [float(np.mean(r["returns"])) for r in runs]
            return f"{np.mean(means):.1f} (runs: {', '.join(f'{m:.1f}' for m in means)})"
        returns = np.concatenate([np.asarray(r["returns"], dtype=np.float64) for r in runs])
        return f"{returns.mean():.1f} +- {returns.std():.1f}"

    def row(self) -> str:
        if len(self.records) == 1:
            links = f"[record]({self.records[0]})"
        else:
            links = "records " + ", ".join(f"[{i}]({r})" for i, r in enumerate(self.records, 1))
        return f"| {self.game} | {self.agent} | {self.score()} | {self.episodes}; {self.machine} | {links} |"


@dataclass(frozen=True)
class Published:
    game: str
    agent: str
    score: str
    episodes: str
    source: str

    def row(self) -> str:
        return f"| {self.game} | {self.agent} | {self.score} | {self.episodes} | {self.source} |"


AVX512, AVX2 = "2-core AMD EPYC, AVX-512 BF16", "2-core AMD EPYC, AVX2"
XEON = "2-core Intel Xeon, AVX-512 BF16 and AMX"
ROWS = (
    Ours(
        "CarRacing",
        "**shipped** `pretrained/carracing`",
        "the 100 standard test tracks",
        ("pretrained/carracing/run/test_returns.json",),
        machine=AVX512,
    ),
    Ours(
        "CarRacing",
        "**shipped**, 200 more tracks",
        "`--seed 1` and `--seed 2`, tracks no search used",
        (
            "docs/carracing/more-test-tracks/shipped-seed1.json",
            "docs/carracing/more-test-tracks/shipped-seed2.json",
        ),
        machine=AVX512,
    ),
    Ours(
        "CarRacing",
        "the `budget` recipe, 3 seeds (~2-3 h each)",
        "the 100 standard test tracks",
        tuple(f"docs/carracing/pipelines2-recipe-seed{s}/test_returns.json" for s in (0, 2, 4)),
        per_run=True,
        machine=AVX512,
    ),
    Published("CarRacing", "the paper", "906 +- 21", "100 tracks", "Ha & Schmidhuber 2018"),
    Published(
        "CarRacing", "earlier PyTorch ports", "860 +- 120, 820 +- 153", "100 tracks", "ctallec, hdilab"
    ),
    Published("CarRacing", "AttentionAgent (no world model)", "914 +- 15", "100 tracks", "Tang et al. 2020"),
    Published("CarRacing", "PPO-LSTM (SB3 zoo)", "862 +- 97", "100 tracks", "rl-baselines3-zoo"),
    Ours(
        "Doom take-cover",
        "**shipped** `pretrained/doom-takecover` (C learned in the dream)",
        "`--seed 1` to `--seed 4`, 400 episodes no pick used",
        (
            "pretrained/doom-takecover/run/test_returns.json",
            *(f"pretrained/doom-takecover/run/test_returns_seed{s}.json" for s in (2, 3, 4)),
        ),
        machine="2-core AMD EPYC, AVX2 (seeds 1, 2) and AVX-512 BF16 (3, 4)",
    ),
    Ours(
        "Doom take-cover",
        "the `doom` recipe's C (`--seed 0`) on the shipped V and M",
        "`--seed 0`, 100 episodes",
        ("docs/doom/oldm-recipe-seed0/test_returns.json",),
        machine=AVX2,
    ),
    Ours(
        "Doom take-cover",
        "the recipe since M's window fix: one new M, C `--seed 0` and `--seed 1`",
        "`--seed 0`, 100 episodes",
        ("docs/doom/mfix-recipe-seed0/test_returns.json", "docs/doom/mfix-recipe-c1/test_returns.json"),
        per_run=True,
        machine=AVX2,
    ),
    Ours(
        "Doom take-cover",
        "the recipe now (two rounds, the second keeping round 0's V; its stages run one by one), "
        "`--seed 0` and `--seed 1`",
        "`--seed 8`, 100 episodes",
        tuple(f"docs/doom/iter2-keepv/seed{s}/test_returns_seed8.json" for s in (0, 1)),
        per_run=True,
        machine=XEON,
    ),
    Published(
        "Doom take-cover", "the paper (tau 1.15)", "1092 +- 556", "100 episodes", "Ha & Schmidhuber 2018"
    ),
    Published(
        "Doom take-cover",
        "other ports",
        "849 +- 499, 840 +- 524",
        "100-1000 episodes",
        "a TF2 and a JAX port",
    ),
    Published(
        "Doom take-cover",
        "AttentionAgent (trained in the game)",
        "1125 +- 589",
        "100 episodes",
        "Tang et al. 2020",
    ),
    Published("Doom take-cover", "random policy", "210 +- 108", "100 episodes", "Ha & Schmidhuber 2018"),
    Ours(
        "SocNavGym",
        "**shipped** `pretrained/socnav` (the robot's view)",
        "`--seed 8`, 100 episodes no pick used",
        ("pretrained/socnav/run/test_returns.json",),
        machine=XEON,
        rates=True,
    ),
    Ours(
        "SocNavGym",
        "the `socnav` recipe, two runs (`--seed 0`, `1`; the shipped agent is `--seed 0`'s), pooled",
        "the same 100 episodes",
        tuple(f"docs/socnav/seed8/egop-s{s}-sal10-u256-d6.json" for s in (0, 1)),
        machine=XEON,
        rates=True,
    ),
    Ours(
        "SocNavGym",
        "the agent shipped before (C of 64 units, 3 rounds of DAgger)",
        "the same 100 episodes",
        ("docs/socnav/seed8/shipped-before.json",),
        machine=XEON,
        rates=True,
    ),
    Ours(
        "SocNavGym",
        "random policy",
        "the same 100 episodes",
        ("pretrained/socnav/run/random_returns.json",),
        machine=XEON,
        rates=True,
    ),
    Ours(
        "SocNavGym",
        "ORCA, reading the simulator's state (a reference, not an agent)",
        "the same 100 episodes",
        ("pretrained/socnav/run/reference_orca_returns.json",),
        machine=XEON,
        rates=True,
    ),
)


def table() -> str:
    head = "| game | agent | score (mean +- std; SocNavGym: outcomes) | test episodes; machine | record |"
    head += "\n| --- | --- | ---: | --- | --- |"
    return "\n".join([head, *(r.row() for r in ROWS)])


def readme_table(readme: str) -> str | None:
    if BEGIN not in readme or END not in readme:
        return None
    return readme.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the table into README.md")
    mode.add_argument("--check", action="store_true", help="exit 1 when README.md's table differs")
    args = parser.parse_args(argv)
    readme_path = ROOT / "README.md"
    readme, new = readme_path.read_text(), table()
    if args.write:
        if readme_table(readme) is None:
            print(f"{readme_path}: no results table markers ({BEGIN} ... {END})", file=sys.stderr)
            return 1
        before, rest = readme.split(BEGIN, 1)
        text = f"{before}{BEGIN}\n{new}\n{END}{rest.split(END, 1)[1]}"
        atomic_write(readme_path, lambda f: f.write(text.encode()))
    elif args.check:
        if readme_table(readme) != new:
            print(
                f"{readme_path}: its results table is not the records' (run scripts/results_table.py --write)"
            )
            return 1
    else:
        print(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
