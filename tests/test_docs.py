"""The published docs: the README's fresh-machine commands and portable paths (issue 10, items 21 and 22),
and the experiment catalogue (issue 11)."""

import ast
import importlib.util
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_says_what_the_test_command_installs_and_how_long_it_takes():
    text = " ".join((REPO / "README.md").read_text().split())
    command = 'pip install torch==2.13.0 && pip install -e ".[test,ray,text]" && lint-imports && python -m pytest -q'
    assert command in text
    assert "Ray" in text and "transformers" in text and "about ten minutes on 2 CPU cores" in text
    # how to get PyTorch's CPU wheel on a machine without a GPU
    assert "--index-url https://download.pytorch.org/whl/cpu" in text
    # .ci/run runs exactly that command
    ci = (REPO / ".ci" / "run").read_text()
    steps = [ln.strip() for ln in ci.splitlines() if ln.strip() and not ln.startswith(("#", "set ", "cd "))]
    assert steps == [
        "python -m pip install -q torch==2.13.0",
        'python -m pip install -q -e ".[test,ray,text]"',
        "lint-imports",
        "python -m pytest -q",
    ]


def test_published_docs_carry_no_machine_paths():
    docs = [REPO / "README.md", REPO / "experiments" / "README.md", *sorted((REPO / "experiments").glob("**/*.md"))]
    bad = re.compile(r"(/work/|/tmp/|/root/|/home/\w+|/Users/\w+|pytest-of-)")
    hits = [
        f"{p.relative_to(REPO)}:{i}: {ln.strip()}"
        for p in docs
        for i, ln in enumerate(p.read_text().splitlines(), 1)
        if bad.search(ln)
    ]
    assert not hits, "\n".join(hits)


def test_readme_python_snippets_run_as_written():
    """Every ```python block of the README runs in order (long loops shortened), defining what it uses."""
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 3
    # the practitioner recipes for frameworks in optional extras run where the framework is installed
    # (their full runnable versions are examples/*.py, run by tests/test_examples.py)
    optional = {"from transformers import": "transformers", "import lightning": "lightning"}
    for start, package in optional.items():
        if importlib.util.find_spec(package) is None:
            blocks = [b for b in blocks if not b.startswith(start)]
    code = "\n".join(blocks)
    code = code.replace("for step in range(6000):", "for step in range(20):")
    code = code.replace("trainer.fit(x, y, epochs=100)", "trainer.fit(x, y, epochs=2, progress=False)")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["trainer"].predict(scope["x"]).shape == (27, 512)
    assert scope["b"].weights.shape == (128,)


# -- docs/catalogue.md: one row per experiment (issue 11) ------------------------------------------
# Regenerate the table after changing what an experiment imports: python tests/test_docs.py --write

CATALOGUE = REPO / "docs" / "catalogue.md"
LIBRARY = ("iwlab.data", "iwlab.models", "iwlab.sampling", "iwlab.functional", "iwlab.train")
LIBRARY += ("iwlab.implicit_bias", "iwlab.losses", "iwlab.files")
SHARED = ("iwlab.experiments.base", "iwlab.experiments.findings")  # the registry's and the verdicts' own
TABLE_HEAD = "| experiment | config (module) | library functions it calls | their tests |\n|---|---|---|---|\n"


def _path(module: str) -> Path:
    p = REPO / "src" / Path(*module.split("."))
    return p / "__init__.py" if p.is_dir() else p.with_suffix(".py")


def _imports(module: str) -> list[tuple[str, str]]:
    tree = ast.parse(_path(module).read_text())
    return [
        (n.module, a.name)
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("iwlab")
        for a in n.names
    ]


def _experiment_modules(module: str) -> list[str]:
    """The experiment's module and the experiment-layer helper modules it uses (cifar_common, ...)."""
    seen, todo = [], [module]
    while todo:
        m = todo.pop(0)
        if m in seen:
            continue
        seen.append(m)
        for mod, name in _imports(m):
            for cand in (f"{mod}.{name}", mod):
                if cand.startswith("iwlab.experiments.") and cand not in SHARED and _path(cand).exists():
                    todo.append(cand)
                    break
    return seen


def _defining(module: str, name: str) -> tuple[str, str | None]:
    """Where an imported library name is defined: ``(module, name)``, or ``(module, None)`` for a module."""
    if _path(f"{module}.{name}").exists():
        return f"{module}.{name}", None
    home = getattr(getattr(importlib.import_module(module), name), "__module__", None) or module
    if not home.startswith("iwlab") or not hasattr(importlib.import_module(home), name):
        home = module
    return home, name


def _library_calls(module: str) -> dict[str, set[str]]:
    calls: dict[str, set[str]] = {}
    for m in _experiment_modules(module):
        for mod, name in _imports(m):
            if mod.startswith(LIBRARY):
                home, fn = _defining(mod, name)
                calls.setdefault(home, set()).update([fn] if fn else [])
    return calls


def _test_file(module: str) -> str | None:
    """``iwlab.a.b`` -> ``tests/a/test_b.py``, else ``tests/test_a.py``; ``iwlab.a`` -> ``tests/test_a.py`` (when it
    exists). The fallback covers a package whose modules share one test file (``iwlab.implicit_bias``)."""
    parts = module.split(".")[1:]
    for p in ([Path("tests", parts[0], f"test_{parts[-1]}.py")] if len(parts) > 1 else []) + [
        Path("tests", f"test_{parts[0]}.py")
    ]:
        if (REPO / p).exists():
            return p.as_posix()
    return None


def _experiment_test(name: str) -> str:
    for stem in (name, name.split("_")[0], "importance" if name.startswith("importance_sampling") else name):
        for p in (f"tests/experiments/test_{stem}_experiment.py", f"tests/experiments/test_{stem}_experiments.py"):
            if (REPO / p).exists():
                return p
    return f"tests/experiments/test_{name}_experiment.py"  # missing: the path check below names it


def render_catalogue() -> str:
    """The table of docs/catalogue.md, from the registry and the experiment modules' imports."""
    from iwlab.experiments import EXPERIMENTS, get_experiment

    rows = []
    for name, module in EXPERIMENTS.items():
        exp = get_experiment(name)
        mods = _experiment_modules(module)
        calls = _library_calls(module)
        also = f" (also `{'`, `'.join(exp.aliases)}`)" if exp.aliases else ""
        src = [_path(m).relative_to(REPO).as_posix() for m in mods]
        cfg = f"`{src[0]}`" + "".join(f"<br>helpers: `{p}`" for p in src[1:])
        lib = "<br>".join(
            f"`{h}`" + (": " + ", ".join(f"`{f}`" for f in sorted(calls[h])) if calls[h] else " (module)")
            for h in sorted(calls)
        )
        tests = [_experiment_test(name)] + [t for h in sorted(calls) if (t := _test_file(h))]
        rows.append(f"| `{name}`{also} | {cfg} | {lib} | {', '.join(f'`{t}`' for t in dict.fromkeys(tests))} |\n")
    return TABLE_HEAD + "".join(rows)


def _catalogue_rows() -> dict[str, str]:
    text = CATALOGUE.read_text()
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z0-9_]+)`.*$", text, re.M)}


def test_catalogue_has_a_row_for_every_experiment_and_every_path_exists():
    from iwlab.experiments import EXPERIMENTS

    rows = _catalogue_rows()
    assert sorted(rows) == sorted(EXPERIMENTS), "docs/catalogue.md: one row per registered experiment"
    for name, row in rows.items():
        paths = re.findall(r"`((?:src|tests)/[^`]+)`", row)
        assert paths, name
        missing = [p for p in paths if not (REPO / p).is_file()]
        assert not missing, f"{name}: {missing}"
        for cell in row.split("|")[3].split("<br>"):  # `iwlab.module`: `fn`, `fn`
            module, *names = re.findall(r"`([^`]+)`", cell)
            mod = importlib.import_module(module)
            assert all(hasattr(mod, n) for n in names), f"{name}: {module} lacks one of {names}"


def test_catalogue_is_up_to_date():
    assert render_catalogue() in CATALOGUE.read_text(), (
        "docs/catalogue.md is stale: regenerate its table with `python tests/test_docs.py --write`"
    )


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write"]:
        text = CATALOGUE.read_text()
        start = text.index(TABLE_HEAD[:40])
        end = text.find("\n\n", start)
        CATALOGUE.write_text(text[:start] + render_catalogue() + (text[end + 1 :] if end >= 0 else ""))
