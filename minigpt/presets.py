"""Named presets: YAML files in presets/ that override a few keys of params.yaml, turned into
`dvc exp run -S` flags so that a preset run is an ordinary, comparable DVC experiment.

    dvc exp run $(python -m minigpt.presets seed)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from minigpt.errors import MiniGPTError

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"


def load_preset(name: str) -> dict[str, dict[str, Any]]:
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(preset.stem for preset in PRESETS_DIR.glob("*.yaml")))
        raise MiniGPTError(f"no preset {name!r} (known: {known})")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def apply_preset(params: dict, preset: dict[str, dict[str, Any]]) -> dict:
    """params with the preset's keys replaced, section by section."""
    return {section: values | preset.get(section, {}) for section, values in params.items()}


def _hydra_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def set_param_flags(preset: dict[str, dict[str, Any]]) -> list[str]:
    return [f"-S {section}.{key}={_hydra_value(value)}" for section, values in preset.items()
            for key, value in values.items()]


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m minigpt.presets NAME   (prints dvc exp run -S flags)")
    try:
        print(" ".join(set_param_flags(load_preset(sys.argv[1]))))
    except MiniGPTError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
