"""dvc.yaml declares what each stage really uses: every `minigpt/` module its script imports
(directly or through other modules, at module level or inside a function) and every tracked
path the script names. DVC cannot see imports; a missing dep silently serves stale outputs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from minigpt import paths as pipeline_paths
from minigpt.report import declared_paths
from tests.helpers import REPO

PACKAGE = "minigpt"
# Paths a stage may name without declaring them: scratch space for resumable runs, never an input.
UNTRACKED_PATHS = ("models/checkpoints", "data/shards.partial")
TRACKED_ROOTS = ("data", "models", "metrics", "plots", "dvclive")

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def module_file(name: str) -> Path | None:
    """The file of a `minigpt` module (or package) name, None outside the package."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    path = REPO.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def direct_imports(source: Path) -> set[Path]:
    """The package files one file imports, at module level or inside a function."""
    found: set[Path] = set()
    own_package = source.parent / "__init__.py"  # it ran before any module of its package
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from minigpt import template` imports a module; `from minigpt.x import y` a name.
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # importing minigpt.x runs minigpt/__init__.py first
                path = module_file(".".join(parts[:depth]))
                if path is not None and path.is_file() and path != source and path != own_package:
                    found.add(path)
    return found


def imported_files(script: Path) -> set[Path]:
    """The package files a script imports, with everything those import in turn."""
    found: set[Path] = set()
    pending = [script]
    while pending:
        for path in direct_imports(pending.pop()) - found:
            found.add(path)
            pending.append(path)
    return found


def spelled_paths(script: Path) -> set[str]:
    """Repository paths spelled as string literals in a script (data/..., models/..., ...)."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    return {
        node.value.rstrip("/")
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and "/" in node.value
        and node.value.split("/")[0] in TRACKED_ROOTS
        and " " not in node.value
    }


def named_paths(script: Path) -> set[str]:
    """The repository paths a script uses: the `paths.NAME` of minigpt/paths.py it names (a
    path, or a mapping of paths), and any it spells itself."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    names = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "paths"
    }
    found = spelled_paths(script)
    for name in names:
        value = getattr(pipeline_paths, name)
        found |= {path.as_posix() for path in (value.values() if isinstance(value, dict) else [value])}
    return found


def script_of(stage: dict) -> Path:
    """The script a stage runs: `python -m stages.NAME` (or `${launcher} -m stages.NAME`)."""
    module = next(word for word in stage["cmd"].split() if word.startswith("stages."))
    return REPO / "stages" / f"{module.removeprefix('stages.')}.py"


def inside(path: str, entry: str) -> bool:
    """True when the path is the declared entry or a file in the declared directory."""
    return path == entry or path.startswith(entry + "/")


def covered(path: str, declared: set[str]) -> bool:
    """True when the path is declared, inside a declared directory or a directory holding one."""
    return any(path == entry or path.startswith(entry + "/") or entry.startswith(path + "/") for entry in declared)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_stage_depends_on_exactly_the_modules_its_script_imports(name):
    stage = STAGES[name]
    script = script_of(stage)
    deps = set(declared_paths(stage, "deps"))
    assert script.relative_to(REPO).as_posix() in deps, f"{name}: its own script is not a dep"
    imported = {path.relative_to(REPO).as_posix() for path in imported_files(script)}
    listed = {dep for dep in deps if dep.startswith(PACKAGE + "/")}
    # A subpackage is declared whole: its `__init__` imports every module in it.
    undeclared = sorted(path for path in imported if not any(inside(path, dep) for dep in listed))
    needless = sorted(dep for dep in listed if not any(inside(path, dep) for path in imported))
    assert not undeclared, f"{name}: add to its deps in dvc.yaml: {undeclared}"
    assert not needless, f"{name}: {needless} are deps it never imports (they rerun it for nothing)"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_path_a_stage_script_names_is_a_dep_or_an_output(name):
    stage = STAGES[name]
    known = set(declared_paths(stage, "deps", "outs", "metrics", "plots"))
    missing = {
        path
        for path in named_paths(script_of(stage))
        if not covered(path, known) and not path.startswith(UNTRACKED_PATHS)
    }
    assert not missing, f"{name}: its script names {sorted(missing)}, which dvc.yaml does not declare"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_stage_script_takes_its_paths_from_the_paths_module(name):
    """Spelled once in minigpt/paths.py (and declared in dvc.yaml), never again in a script."""
    assert not spelled_paths(script_of(STAGES[name]))


def test_the_path_check_sees_what_a_script_uses_through_the_paths_module(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text("from minigpt import paths\nprint(paths.MODEL, paths.EVAL_PLOTS['errors'], 'data/x')\n")
    plots = {path.as_posix() for path in pipeline_paths.EVAL_PLOTS.values()}  # a mapping counts whole
    assert named_paths(script) == {"models/minigpt", "data/x"} | plots


def test_the_import_walk_sees_lazy_imports_and_follows_them(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text("def main():\n    from minigpt.evaluation import evaluate_model\n", encoding="utf-8")
    files = {path.name for path in imported_files(script)}
    # evaluation imports metrics, which imports language: two levels down
    assert {"__init__.py", "evaluation.py", "metrics.py", "language.py"} <= files
    assert "chat.py" not in files


def test_the_package_has_no_import_cycle():
    """A cycle (even through a function-level import) makes every module in it a dep of every
    stage that touches one of them, and layers that reach up."""
    modules = sorted((REPO / PACKAGE).rglob("*.py"))
    for module in modules:
        reachable = imported_files(module)
        assert module not in reachable, f"{module.name} imports itself through {sorted(p.name for p in reachable)}"


@pytest.mark.parametrize("module", ["minigpt.report", "minigpt.findings", "minigpt.config", "minigpt.metrics"])
def test_layers_that_word_or_check_results_do_not_load_torch(module):
    """The report, the study's wording, the params schema and the metrics are plain Python:
    the report stage and a params check start in a moment and need no accelerator stack."""
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert loaded.stdout.strip() == "[]"


def test_a_stage_runs_the_minigpt_of_its_own_checkout_whatever_is_installed(tmp_path):
    """The package is installed in editable mode from one checkout; a second checkout (or DVC's
    copy for `dvc exp run --temp` or the queue) sharing the venv must still run its own code."""
    from tests.helpers import copy_repository, run_command

    copy = copy_repository(tmp_path / "second", results=False)
    marker = "minigpt of the second checkout"
    init = copy / PACKAGE / "__init__.py"
    init.write_text(init.read_text(encoding="utf-8") + f"raise SystemExit({marker!r})\n", encoding="utf-8")
    for name, stage in STAGES.items():
        command = stage["cmd"].replace("${launcher}", "python").split()
        ran = run_command(command, copy, check=False)
        assert ran.returncode == 1 and marker in ran.stderr, f"{name}: {command} ran another checkout's code"
