"""Every recipe in examples/ runs as documented: ``python examples/<name>.py`` exits 0 and prints its result.

Each recipe is run in a fresh process from the repository root (as its docstring says), on the CPU
with one thread, and must print its result line. A recipe that needs a package that is not installed
is skipped, naming the package and the extra that brings it. Recipes without an entry in ``RECIPES``
need nothing beyond torch and must print a line with "final" and "loss" in it, as every recipe does.
"""

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.py"))
TIMEOUT_S = 120  # per recipe; each takes seconds to about a minute on 2 CPU cores

DEFAULT_EXPECT = r"\bfinal\b.*\bloss\b"  # every recipe prints its final loss


class Recipe:
    """What one recipe needs: importable packages (with the extra that installs them) and lines it must print."""

    def __init__(self, requires: dict[str, str] | None = None, expect: tuple[str, ...] = (DEFAULT_EXPECT,)) -> None:
        self.requires = requires or {}  # import name -> install hint
        self.expect = expect  # regexes, each must match a line of stdout


RECIPES = {
    "lightning_pool.py": Recipe(
        requires={"lightning": "pip install -e '.[test]'"},
        expect=(r"^final loss \d+\.\d+ .*train accuracy \d\.\d+ after \d+ steps$",),
    ),
    "hf_trainer_class_weights.py": Recipe(
        requires={"transformers": "pip install -e '.[text]'", "accelerate": "pip install -e '.[text]'"},
        expect=(r"^final loss \d+\.\d+; recall per class \d\.\d+ / \d\.\d+",),
    ),
    # two processes print one line each; not anchored: their writes to the shared pipe can interleave
    # (print writes the text and the newline separately)
    "ddp_weighted_sampler.py": Recipe(expect=(r"rank 0: .*?final balanced loss", r"rank 1: .*?final balanced loss")),
}


def _missing(recipe: Recipe) -> list[str]:
    return [f"{name} ({hint})" for name, hint in recipe.requires.items() if importlib.util.find_spec(name) is None]


def test_the_examples_folder_has_recipes():
    # the parametrized tests below would silently run nothing if the folder moved
    assert EXAMPLES, f"no recipes under {REPO / 'examples'}"


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_recipe_runs_and_prints_its_result(path):
    recipe = RECIPES.get(path.name, Recipe())
    missing = _missing(recipe)
    if missing:
        pytest.skip(f"{path.name} needs {', '.join(missing)}")
    # the documented command, from the repository root; one thread per process on a shared CPU, no GPU
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    try:
        p = subprocess.run(
            [sys.executable, str(path.relative_to(REPO))],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{path.name} ran past {TIMEOUT_S} s; its stdout so far:\n{e.stdout}")
    assert p.returncode == 0, (
        f"{path.name} exited {p.returncode}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}"
    )
    for pattern in recipe.expect:
        assert re.search(pattern, p.stdout, re.MULTILINE), (
            f"{path.name} printed no line matching {pattern!r}:\n{p.stdout}"
        )


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_recipe_docstring_says_what_it_shows_and_how_to_run_it(path):
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert doc, f"{path.name} has no module docstring"
    command = f"python examples/{path.name}"
    assert command in doc, f"{path.name}'s docstring does not give its run command {command!r}"
    # a summary line before the command: what the recipe shows
    assert doc.splitlines()[0].strip() and not doc.splitlines()[0].startswith("python"), path.name


def test_every_recipe_table_entry_names_an_existing_file():
    # a renamed recipe would otherwise keep running with the default expectations and lose its checks
    names = {p.name for p in EXAMPLES}
    assert set(RECIPES) <= names, sorted(set(RECIPES) - names)
