"""Helpers shared by the tests: paths, example data, small training settings, and commands run
on copies of the repository. Fixtures live in conftest.py; this module is imported."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from minigpt.config import LoopParams, LoraParams, RuntimeParams
from minigpt.model import GPTConfig
from minigpt.packing import PackedRows, pack

REPO = Path(__file__).resolve().parent.parent
# The data kit (docs/data-kit.md), beside the checkout. Users have none: MINIGPT_HIDE_DATA_KIT=1
# runs the tests as their clones have it, and CI runs the data_kit tests a second time so.
SHARED_DATA = REPO.parent / "shared" / "data"
HAS_DATA_KIT = SHARED_DATA.is_dir() and os.environ.get("MINIGPT_HIDE_DATA_KIT") != "1"

needs_shared_data = pytest.mark.skipif(not HAS_DATA_KIT, reason="../shared/data (the data kit) is absent or hidden")
uses_data_kit = pytest.mark.data_kit  # behaves differently with and without the kit: CI runs it both ways


def example(instruction: str, output: str, input: str = "", **extra: str) -> dict:
    return {"instruction": instruction, "input": input, "output": output, **extra}


def spanish_examples(count: int, prefix: str = "Explica") -> list[dict]:
    """Distinct, clearly Spanish examples."""
    return [
        example(
            f"{prefix} el concepto número {i} de la lista.",
            f"El concepto número {i} es una idea que se usa en la vida diaria y en la escuela.",
        )
        for i in range(count)
    ]


def spanish_documents(count: int, start: int = 0) -> list[str]:
    """Distinct plain-text documents of a few lines, a little longer every time."""
    return [
        f"Documento {i}: el río pasa por el pueblo número {i}.\n"
        + " ".join(f"La historia de la ciudad {i} tiene {j} capítulos." for j in range(1 + i % 7))
        for i in range(start, start + count)
    ]


def write_documents(path: Path, documents: list[str]) -> Path:
    """A .txt corpus: documents separated by blank lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    return path


CONVERSATIONS = [
    [{"role": "user", "content": "¿Qué es un átomo?"}],
    [{"role": "user", "content": "Resume el texto.", "input": "El sol sale por el este."}],
    [
        {"role": "user", "content": "Traduce al inglés.", "input": "Hola"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "¿Y «adiós»?"},
    ],
    [
        {"role": "user", "content": "Di 'hola' y \"adiós\" {{ no es jinja }} \\n"},
        {"role": "assistant", "content": "hola"},
    ],
    [{"role": "user", "content": "Sin entrada.", "input": ""}, {"role": "assistant", "content": "Vale."}],
]


# --------------------------------------------------------------------------- tiny training runs

TINY = GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=16)
LOOP = dict(
    epochs=1.0,
    micro_batch_size=4,
    batch_tokens=128,
    learning_rate=1e-2,
    min_lr_ratio=0.1,
    warmup_steps=2,
    weight_decay=0.1,
    beta1=0.9,
    beta2=0.95,
    grad_clip=1.0,
    eval_every=4,
    eval_rows=0,
    precision="auto",
    seed=7,
)
RUNTIME = RuntimeParams(log_every=2, checkpoint_every=4, keep_checkpoints=2)


def loop_params(**overrides) -> LoopParams:
    return LoopParams.model_validate(LOOP | overrides)


def random_rows(count: int, seed: int = 0, layout: str = "masked") -> PackedRows:
    generator = torch.Generator().manual_seed(seed)
    sequences = [
        (torch.randint(2, 64, (int(length),), generator=generator).tolist() + [0], [True] * (int(length) + 1))
        for length in torch.randint(3, 16, (count,), generator=generator)
    ]
    return pack(sequences, TINY.block_size + 1, pad_id=1, layout=layout)


LORA = LoraParams.model_validate(
    LOOP
    | {"categories": ["ciencia"], "rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["c_attn", "c_proj", "c_fc"]}
)


# --------------------------------------------------------------------------- repository copies and commands

# What `dvc repro` writes into git: a clone that has not run the pipeline yet lacks them.
RESULTS = ("metrics/", "plots/", "dvc.lock")


def copy_repository(target: Path, results: bool = True) -> Path:
    """Copy the repository's files as git sees them (tracked, or new and not ignored); without
    `results`, as a user whose clone has no results yet."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file() and (results or not name.startswith(RESULTS)):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def run_command(
    command: list[str], cwd: Path, check: bool = True, env: dict[str, str] | None = None, **kwargs
) -> subprocess.CompletedProcess:
    """Run with this interpreter's bin first on PATH, so `python` in dvc.yaml commands is this one
    (and with `env` added to the environment)."""
    env = os.environ | (env or {}) | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}")
    return result


def run_two_ranks(out: Path, *arguments: str) -> subprocess.CompletedProcess:
    """tests/two_ranks.py on two CPU processes under torch's launcher, writing into `out`."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(REPO / "tests" / "two_ranks.py"),
            str(out / "checkpoints"),
            str(out),
            *arguments,
        ],
        capture_output=True,
        text=True,
        env=os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
        timeout=300,
    )


def free_port() -> int:
    """A TCP port on this machine that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def short_head(directory: Path) -> str:
    """The short hash of the commit checked out in `directory`."""
    return run_command(["git", "rev-parse", "--short", "HEAD"], directory).stdout.strip()


def commit_all(directory: Path, message: str) -> None:
    """Commit every file git does not ignore, making `directory` a repository first if needed
    (with a throwaway identity: `dvc exp run` needs a commit, and CI machines may have no user)."""
    if not (directory / ".git").exists():
        run_command(["git", "init", "-q"], directory)
    run_command(["git", "add", "-A"], directory)
    run_command(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", message], directory)


def exp_show_columns(metrics: dict, prefix: str = "") -> set[str]:
    """The column names `dvc exp show` gives a metrics file's values: one per leaf, nested keys
    joined by dots."""
    names = set()
    for key, value in metrics.items():
        names |= exp_show_columns(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return names


def update_params(workspace: Path, runtime: dict | None = None, **sections: dict) -> None:
    """Override keys of params.yaml sections, and the `runtime` keys of runtime.yaml, in a workspace copy."""
    for name, changes in (("params.yaml", sections), ("runtime.yaml", {None: runtime} if runtime else {})):
        if not changes:
            continue
        path = workspace / name
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
        for section, section_changes in changes.items():
            (values if section is None else values[section]).update(section_changes)
        path.write_text(yaml.safe_dump(values, allow_unicode=True, sort_keys=False), encoding="utf-8")
