"""Named presets: YAML files in presets/ that override a few keys of params.yaml (and, in their
`runtime` section, of runtime.yaml), turned into `dvc exp run -S` flags so that a preset run is
an ordinary, comparable DVC experiment.

    dvc exp run $(python -m minigpt.presets seed)            # the reference's recipe, on a GPU
    dvc exp run $(python -m minigpt.presets seed smoke)      # presets layer: later ones win, key by key
    python -m minigpt.presets seed smoke --run -n smoke      # the same, no shell involved (zsh, fish)

The flags are printed for the shell to split on spaces, so no value may contain one; lists and
mappings (e.g. `prepare.sources`) are written in Hydra's override syntax, which DVC parses.
zsh stops at such a word as at a glob that matches nothing: there, use `--run`, which starts
`dvc exp run` itself with the flags and any arguments after `--run`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from minigpt.config import RUNTIME_FILE, load_params
from minigpt.errors import MiniGPTError

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"


_NAME = re.compile(r"[A-Za-z0-9_-]+")  # a file of presets/, never a path elsewhere


def load_preset(name: str) -> dict[str, dict[str, Any]]:
    """A preset by name: its sections, each a mapping of keys to values."""
    path = PRESETS_DIR / f"{name}.yaml"
    if not _NAME.fullmatch(name) or not path.is_file():
        known = ", ".join(sorted(preset.stem for preset in PRESETS_DIR.glob("*.yaml")))
        raise MiniGPTError(f"no preset {name!r} (known: {known})")
    try:
        preset = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise MiniGPTError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(preset, dict) or not all(isinstance(keys, dict) for keys in preset.values()):
        raise MiniGPTError(f"{path}: a preset is sections (prepare:, train:, runtime:, …), each a mapping of keys")
    return preset


def combine(names: list[str]) -> dict[str, dict[str, Any]]:
    """Presets layered in order: a later preset's key replaces an earlier one's."""
    return layered(*(load_preset(name) for name in names))


def layered(*layers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Overrides (section -> keys) layered in order: a later layer's key replaces an earlier one's."""
    combined: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for section, values in layer.items():
            combined[section] = combined.get(section, {}) | values
    return combined


_PLAIN = re.compile(r"[A-Za-z0-9_./+*@-]+")  # what Hydra reads unquoted


def _hydra_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ",".join(map(_hydra_value, value)) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{_hydra_value(item)}" for key, item in value.items()) + "}"
    text = str(value)
    if any(char.isspace() for char in text) or "'" in text:
        raise MiniGPTError(
            f"preset value {text!r} has a space or a quote: the shell would split or mangle the "
            "flag; set it in params.yaml instead"
        )
    # Quoted unless Hydra would read it back as this very string ('2024', 'true', 'null' would change type).
    return text if _PLAIN.fullmatch(text) and yaml.safe_load(text) == text else f"'{text}'"


def set_param_flags(preset: dict[str, dict[str, Any]]) -> list[str]:
    """One flag per key; the `runtime` section's keys are top-level keys of runtime.yaml."""
    return [
        f"-S {RUNTIME_FILE}:{key}={_hydra_value(value)}"
        if section == "runtime"
        else f"-S {section}.{key}={_hydra_value(value)}"
        for section, values in preset.items()
        for key, value in values.items()
    ]


def main() -> None:
    names, run_args = sys.argv[1:], None
    if "--run" in names:
        names, run_args = names[: names.index("--run")], names[names.index("--run") + 1 :]
    if not names:
        sys.exit(
            "usage: python -m minigpt.presets NAME [NAME ...] [--run [DVC EXP RUN ARGS]]\n"
            "  prints the dvc exp run -S flags of the presets, or with --run runs dvc exp run with them"
        )
    try:
        preset = combine(names)
        load_params(overrides=preset)  # a preset that breaks a rule fails here, not once dvc exp run has started
        flags = set_param_flags(preset)
    except MiniGPTError as error:
        sys.exit(f"error: {error}")
    if run_args is None:
        print(" ".join(flags))
        return
    words = [word for flag in flags for word in flag.split(" ", 1)]
    sys.exit(subprocess.run([sys.executable, "-m", "dvc", "exp", "run", *words, *run_args]).returncode)


if __name__ == "__main__":
    main()
