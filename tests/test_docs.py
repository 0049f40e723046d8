"""The documentation's links: every relative link and image of README.md, docs/ and the model cards names a
file of the repository, and every #anchor a heading of the page it points to."""

import re
from pathlib import Path

import pytest

from scripts import results_table

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *ROOT.glob("pretrained/*/README.md")])
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation but - and _ dropped, spaces to -."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", FENCE.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text()))


def test_the_pages_exist_and_link():
    assert ROOT / "README.md" in PAGES and len(PAGES) >= 4
    assert sum(len(links(p)) for p in PAGES) > 10


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto: ...: not checked here (no network)
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or not file.is_relative_to(ROOT):
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_the_readme_results_table_is_the_records():
    """The README's table is what scripts/results_table.py computes from the records it links."""
    assert results_table.main(["--check"]) == 0


def test_the_readme_first_python_example_runs_as_written(monkeypatch, capsys):
    """The README's first Python block, run from the repository root as a user would paste it; only the
    episode is cut to 40 steps, by the cap the agent's env takes."""
    code = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)[0]
    import world_models

    make_env = world_models.TrainedAgent.make_env
    monkeypatch.setattr(
        world_models.TrainedAgent,
        "make_env",
        lambda self, **kw: make_env(self, **{**kw, "max_episode_steps": 40}),
    )
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["done"] and namespace["total"] != 0.0
    assert re.fullmatch(r"return -?\d+\.\d\n", capsys.readouterr().out)
