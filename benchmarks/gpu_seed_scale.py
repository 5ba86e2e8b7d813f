"""The project's own stages at seed scale on one GPU, in one command, within a time budget.

    bash benchmarks/gpu_seed_scale.sh run OUT --commit abc1234                      # GPU, seed scale
    python benchmarks/gpu_seed_scale.py --data kit --out /tmp/r --scale tiny        # CPU, a few minutes

`--data` holds the data kit's layout (`corpus-es/*.txt`, `instrucciones-es/traduccion-*.jsonl`,
`instrucciones-es/opcion-multiple.jsonl`; docs/data-kit.md). Phases, each timed, and
`results.json` and `results.md` rewritten in `--out` after every stage and phase, so a run cut
short still returns what it measured:

1. environment: versions, the device, and a torch.compile pre-flight (if it fails, the stages
   run eagerly and the results say so);
2. stages: a working copy of the pipeline (stages/, minigpt/, presets/, data/) whose params.yaml
   is params.yaml + the `seed` preset + the kit layer below, validated by `minigpt.config`;
   then `python -m stages.NAME` for each stage in dvc.yaml's order: prepare, tokenizer, corpus,
   pretrain, train, evaluate, lora, evaluate_lora (not compare_architectures: its 2,000 steps
   per seed and architecture do not fit; not report: it reads git). Each stage's seconds, peak
   memory (RSS and GPU, from MINIGPT_STAGE_LOG), tokens/s, compile counts and metrics files go
   into the results as it ends; its console into `stages.log`;
3. attention: `benchmarks/attention_check.py`, the FlexAttention path against SDPA on packed
   rows (logits and, on CUDA, gradients);
4. step: `benchmarks/train_step.py` at the seed shape, the MFU variants side by side: the
   document-masked step with SDPA and with FlexAttention beside the open (unmasked) step,
   dropout 0.1, micro-batch 64.

It imports only what the GPU image has plus pydantic, rouge-score and its imports (carried by
`gpu_seed_scale.sh`): no dvc, dvclive or gradio, no network and no git; weights stay there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minigpt.config import PARAMS_FILE, RUNTIME_FILE, load_params, raw_params  # noqa: E402
from minigpt.errors import STAGE_LOG  # noqa: E402
from minigpt.files import read_jsonl  # noqa: E402
from minigpt.model import GPT, GPTConfig  # noqa: E402
from minigpt.presets import combine, layered  # noqa: E402
from minigpt.training import device_peak_flops  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PHASES = ("stages", "attention", "step")  # after the environment, which always runs
STAGES = ("prepare", "tokenizer", "corpus", "pretrain", "train", "evaluate", "lora", "evaluate_lora")
# What a stage needs from the repository (copied into the working copy) besides the kit.
PIPELINE = ("stages", "minigpt", "presets", "data/raw", "data/eval", "data/tokenizers", "data/corpus")
PIPELINE_FILES = ("dvc.yaml", PARAMS_FILE, RUNTIME_FILE)
KIT = "data/kit"  # where the kit lies in the working copy: the layer's paths are relative to it

# The kit in place of the hub: about the reference's 57k examples (three of the eleven translation
# files, ~63k pairs) and its 11.6 M characters of Spanish text to pretrain on, one pass each.
KIT_LAYER: dict[str, dict[str, Any]] = {
    "prepare": {
        "sources": [
            {"kind": "alpaca", "path": f"{KIT}/instrucciones-es/traduccion-[123].jsonl", "name": "kit-traduccion"},
            {"kind": "jsonl", "path": "data/raw/generated.jsonl"},
            {"kind": "jsonl", "path": "data/raw/handwritten.jsonl"},
        ],
        "on_error": "skip",
    },
    "corpus": {"sources": [{"path": f"{KIT}/corpus-es/*.txt", "name": "kit-corpus"}]},
    "train": {"init_from": "pretrained", "epochs": 1},
    "evaluate": {
        "multiple_choice": {
            "hechos": "data/eval/opcion_multiple.jsonl",
            "okapi": f"{KIT}/instrucciones-es/opcion-multiple.jsonl",
        }
    },
}

SCALES: dict[str, dict[str, Any]] = {
    "seed": dict(
        presets=["seed"],
        layer={},
        budget=570.0,
        stage_budget=480.0,
        # Open; masked with each attention path; all speedups; dropout 0.1; micro-batch 64; each
        # speedup alone: in that order, so a run cut by the budget keeps the first rows. (The HF
        # rows were measured at df14fec.)
        step=[
            *("--shape", "seed", "--rows", "32", "--steps", "30", "--measure-peak", "--compile"),
            *("--documents", "200", "--attention", "sdpa", "flex", "--dropout-row", "0.1", "--micro-row", "64"),
            *("--speedups", "chunked_loss", "bf16_residual", "compiled_optimizer"),
            *("--skip", "hf-reference", "hf-tuned"),
        ],
    ),
    # The CPU rehearsal: the smoke preset's two steps per training stage at a tiny shape, on a small kit.
    "tiny": dict(
        presets=["seed", "smoke"],
        layer={
            "tokenizer": {"vocab_size": 400},
            "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 64},
            "compare_architectures": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 64},
        },
        budget=900.0,
        stage_budget=600.0,
        step=[
            *("--rows", "2", "--steps", "3", "--documents", "20", "--attention", "sdpa", "--dropout-row", "0.1"),
            *("--speedups", "chunked_loss", "bf16_residual"),
        ],
    ),
}


class Report:
    """results.json and results.md, rewritten after every step; phases run while the budget allows."""

    def __init__(self, out: Path, budget: float, header: dict[str, Any]):
        self.out, self.budget, self.started = out, budget, time.perf_counter()
        self.results: dict[str, Any] = {**header, "budget_seconds": budget, "phases": {}}

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.started)

    def phase(self, name: str, needs: float, work: Callable[[], Any]) -> Any:
        """Run `work` if `needs` seconds are left and keep its value under `name`; a failure is
        recorded, never raised."""
        if needs > self.left():
            self.record(name, {"status": "skipped", "reason": f"needs ~{needs:.0f} s, {self.left():.0f} s left"})
            return None
        print(f"--- {name} ({self.left():.0f} s of the budget left)", flush=True)
        started = time.perf_counter()
        try:
            value = work()
        except Exception as error:  # recorded, and the phases that do not depend on it still run
            traceback.print_exc()
            self.record(name, {"status": "failed", "error": _short(error), "seconds": _since(started)})
            return None
        if value is not None:
            self.results[name] = value
        self.record(name, {"status": "done", "seconds": _since(started)})
        return value

    def record(self, name: str, status: dict) -> None:
        self.results["phases"][name] = status
        self.save()

    def save(self) -> None:
        self.results["total_seconds"] = _since(self.started)
        (self.out / "results.json").write_text(json.dumps(self.results, indent=2, ensure_ascii=False), encoding="utf-8")
        (self.out / "results.md").write_text(markdown(self.results), encoding="utf-8")


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 1)


def _short(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:1000]


# --------------------------------------------------------------------------- phases


def environment() -> dict:
    """Versions, device, and whether torch.compile works here (a tiny model, forward and
    backward; on a GPU only: on a CPU the stages train eagerly)."""
    import tokenizers
    import transformers

    cuda = torch.cuda.is_available()
    found = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "cpu_threads": torch.get_num_threads(),
        "compile": False,
    }
    if not cuda:
        return found
    try:
        model = torch.compile(GPT(GPTConfig(vocab_size=256, block_size=32, n_layer=1, n_head=2, n_embd=64)).cuda())
        tokens = torch.randint(0, 256, (2, 32), device="cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = model(tokens, tokens)
        loss.backward()
        found["compile"] = True
    except Exception as error:  # an image without a working compiler toolchain: eager, and say so
        print(f"torch.compile does not work here ({_short(error)}): the stages run eagerly", flush=True)
        found["compile_error"] = _short(error)[:500]
    return found


def working_copy(data_dir: Path, scale: dict, compile_model: bool) -> dict:
    """A copy of the pipeline with the kit in data/kit and params.yaml (and runtime.yaml) =
    the repository's + the scale's presets + the kit layer + the scale's layer, validated by
    the project's loader: its path (`work`) and the layers applied."""
    work = Path(tempfile.mkdtemp(prefix="minigpt-stages-"))
    for name in PIPELINE:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in PIPELINE_FILES:
        shutil.copy2(REPO / name, work / name)
    for part in ("corpus-es", "instrucciones-es"):
        shutil.copytree(data_dir / part, work / KIT / part)
    layers = layered(combine(scale["presets"]), KIT_LAYER, scale["layer"], {"runtime": {"compile": compile_model}})
    for path, raw in zip((PARAMS_FILE, RUNTIME_FILE), raw_params(work / PARAMS_FILE, work / RUNTIME_FILE, layers)):
        (work / path).write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    load_params(work / PARAMS_FILE)  # a layer that breaks a rule fails here, before any stage
    return {"work": str(work), "layers": layers}


def stage_order() -> list[str]:
    """The stages run here, in dvc.yaml's order."""
    declared = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return [name for name in declared if name in STAGES]


def metrics_files(stage: str) -> list[str]:
    """The metrics files dvc.yaml declares among a stage's outputs."""
    outs = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"][stage]["outs"]
    names = [next(iter(out)) if isinstance(out, dict) else out for out in outs]
    return [name for name in names if name.startswith("metrics/")]


def run_stages(work: Path, out: Path, report: Report, budget: float) -> None:
    """Every stage in order, each in its own process as `dvc repro` starts it, into the report's
    `stages` as each ends; the first that fails or runs out of time ends the chain (the later
    ones need its outputs)."""
    stages: dict[str, Any] = {}
    report.results["stages"] = stages
    stage_log = work / "stages.jsonl"
    env = os.environ | {
        STAGE_LOG: str(stage_log),
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
    }
    deadline = time.perf_counter() + budget
    for name in stage_order():
        started = time.perf_counter()
        left = deadline - started
        print(f"--- stage {name} ({left:.0f} s of the stages' budget left)", flush=True)
        with open(out / "stages.log", "a", encoding="utf-8") as log:
            log.write(f"\n===== stage {name}\n")
            log.flush()
            try:
                done = subprocess.run(
                    [sys.executable, "-m", f"stages.{name}"],  # as dvc.yaml: the copy's minigpt, not an install's
                    cwd=work,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=max(1.0, left),
                )
                status = "done" if done.returncode == 0 else f"failed (exit {done.returncode})"
            except subprocess.TimeoutExpired:
                status = f"out of time ({left:.0f} s left)"
        stages[name] = {"status": status, "seconds": _since(started), **_logged(stage_log, name)}
        if status == "done":
            stages[name]["metrics"] = {path: _read_metrics(work / path) for path in metrics_files(name)}
            stages[name] |= _speed(stages[name]["metrics"])
        report.save()
        print(f"    {name}: {status} in {stages[name]['seconds']} s", flush=True)
        if status != "done":
            print(_tail(out / "stages.log"), flush=True)
            raise RuntimeError(f"stage {name}: {status} (stages.log says why)")


def _logged(stage_log: Path, name: str) -> dict:
    """The stage's own entry in MINIGPT_STAGE_LOG: its peak memory (and its time from inside)."""
    entries = [entry for entry in read_jsonl(stage_log) if entry["stage"] == name] if stage_log.is_file() else []
    if not entries:
        return {}
    entry = entries[-1]
    return {
        "inner_seconds": entry["seconds"],
        "peak_rss_mib": entry["peak_rss_mib"],
        "peak_gpu_mib": entry.get("peak_gpu_mib"),
    }


def _read_metrics(path: Path) -> Any:
    return read_jsonl(path) if path.suffix == ".jsonl" else json.loads(path.read_text(encoding="utf-8"))


# How a training stage ran: what the loop's summary says beside its metrics.
RUN_KEYS = ("steps", "tokens_per_second", "mfu", "compiled", "recompiles", "eager_frames", "graph_breaks")


def _speed(metrics: dict[str, Any]) -> dict:
    found = {}
    for values in metrics.values():
        if isinstance(values, dict):
            found |= {key: values[key] for key in RUN_KEYS if key in values}
    return found


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def helper_script(script: str, arguments: list[str], scratch: Path, timeout: float) -> dict:
    """A benchmark script in its own process (a fresh compile cache and memory peak), its JSON back."""
    target = scratch / f"{Path(script).stem}.json"
    ended = {}
    try:
        subprocess.run(
            [sys.executable, str(REPO / "benchmarks" / script), *arguments, "--out", str(target)],
            check=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        if not target.is_file():
            raise
        ended = {"cut": f"stopped at the budget ({timeout:.0f} s): the rows measured by then"}
    return {**json.loads(target.read_text(encoding="utf-8")), "arguments": arguments, **ended}


def step_variants(arguments: list[str], scratch: Path, timeout: float) -> dict:
    measured = helper_script("train_step.py", arguments, scratch, timeout)
    spec = device_peak_flops(torch.device("cuda")) if torch.cuda.is_available() else None  # the datasheet's
    measured["spec_flops"] = spec
    for row in measured["results"].values():
        row["mfu_vs_spec"] = round(row["mfu"] * measured["peak_flops"] / spec, 4) if row["mfu"] and spec else None
    return measured


# --------------------------------------------------------------------------- the report


def _percent(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "-"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _compiled(run: dict) -> str:
    """A training run's compile state: yes, off (eager by choice), or how many frames fell back."""
    if run.get("eager_frames"):
        return f"no: {run['eager_frames']} frame(s) eager"
    return {True: "yes", False: "off"}.get(run.get("compiled"), "-")


def _scores(stages: dict) -> list[str]:
    """The evaluation's headline scores, and LoRA's change on its categories."""
    lines = []
    evaluation = stages.get("evaluate", {}).get("metrics", {}).get("metrics/eval.json")
    if evaluation:
        generation = evaluation["generation"]
        scores = {
            "answer perplexity": evaluation["perplexity"],
            "sequence perplexity": evaluation["sequence_perplexity"],
            "bits/byte": evaluation["bits_per_byte"],
            **{name: generation[name] for name in ("bleu", "rouge1", "rougeL", "coherence")},
            **{f"{name} accuracy": score["accuracy"] for name, score in evaluation.get("multiple_choice", {}).items()},
        }
        lines += ["", "| " + " | ".join(scores) + " |", "|" + "---:|" * len(scores)]
        lines.append("| " + " | ".join(_cell(value) for value in scores.values()) + " |")
    lora = stages.get("evaluate_lora", {}).get("metrics", {}).get("metrics/lora.json")
    if lora:
        lines += ["", f"LoRA on its categories, relative change: `{json.dumps(lora['domain']['relative_change'])}`"]
    return lines


def markdown(results: dict) -> str:
    env = results.get("environment", {})
    lines = [
        f"# The stages at {results['scale']} scale on {env.get('device', 'an unknown device')}",
        "",
        f"Commit `{results['commit']}`, {results['date']}, {results['total_seconds']} s of a "
        f"{results['budget_seconds']:.0f} s budget.",
    ]
    if env:
        compiled = "on" if env["compile"] else "off (failed: eager)" if "compile_error" in env else "off (CPU: eager)"
        lines += [
            "",
            f"torch {env['torch']}, transformers {env['transformers']}, tokenizers {env['tokenizers']}, "
            f"Python {env['python']}; torch.compile {compiled}.",
        ]
    lines += ["", "| phase | status | seconds |", "|---|---|---:|"]
    for name, phase in results["phases"].items():
        why = " ".join(phase.get("reason", phase.get("error", "")).split()).replace("|", "/")  # one table cell
        lines.append(f"| {name} | {phase['status']}{': ' + why if why else ''} | {phase.get('seconds', '-')} |")
    stages = results.get("stages", {})
    if stages:
        lines += [
            "",
            "## Stages (`python -m stages.NAME` in dvc.yaml's order)",
            "",
            "| stage | status | seconds | peak RSS MiB | peak GPU MiB | steps | tokens/s | MFU | compiled "
            "| recompiles |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
        ]
        for name, stage in stages.items():
            lines.append(
                f"| {name} | {stage['status']} | {stage['seconds']} | {_cell(stage.get('peak_rss_mib'))} "
                f"| {_cell(stage.get('peak_gpu_mib'))} | {_cell(stage.get('steps'))} "
                f"| {_cell(stage.get('tokens_per_second'))} | {_percent(stage.get('mfu'))} | {_compiled(stage)} "
                f"| {_cell(stage.get('recompiles'))} |"
            )
        lines += _scores(stages)
    if "attention" in results:
        lines += ["", f"## FlexAttention against SDPA on packed rows\n\n`{json.dumps(results['attention'])}`"]
    if "step" in results:
        measured = results["step"]
        peak, spec = measured["peak_flops"], measured.get("spec_flops")
        lines += [
            "",
            f"## Training step: `train_step.py {' '.join(measured['arguments'])}`",
            "",
            f"{measured['device']}; MFU against the measured bf16 peak ({peak / 1e12:.0f} TFLOP/s) and the "
            f"datasheet's ({spec / 1e12:.0f} TFLOP/s)"
            if peak and spec
            else measured["device"],
            "",
            *([measured["cut"], ""] if "cut" in measured else []),
            "| run | tokens/s | MFU (measured peak) | MFU (datasheet) | peak memory GiB | compiled |",
            "|---|---:|---:|---:|---:|---|",
        ]
        lines += [
            f"| {name} | {row['tokens_per_second']:,} | {_percent(row['mfu'])} | {_percent(row['mfu_vs_spec'])} "
            f"| {_cell(row['peak_memory_gib'])} | {_compiled(row)} |"
            for name, row in measured["results"].items()
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a copy of the data kit's layout (docs/data-kit.md)")
    parser.add_argument("--out", type=Path, required=True, help="results.json, results.md and stages.log go here")
    parser.add_argument("--scale", choices=sorted(SCALES), default="seed")
    parser.add_argument("--commit", default="unknown", help="the commit measured (written into the results)")
    parser.add_argument("--budget", type=float, help="seconds for the whole run (default: the scale's)")
    parser.add_argument(
        "--phases", nargs="+", choices=PHASES, default=list(PHASES), help="run only these (default: all, in order)"
    )
    args = parser.parse_args()
    scale = SCALES[args.scale]
    args.out.mkdir(parents=True, exist_ok=True)
    budget = args.budget or scale["budget"]
    report = Report(args.out, budget, {"commit": args.commit, "date": time.strftime("%Y-%m-%d"), "scale": args.scale})
    scratch = Path(tempfile.mkdtemp(prefix="minigpt-benchmark-"))  # not `out`: few files may come back

    env = report.phase("environment", 0, environment) or {"compile": False}
    if "stages" in args.phases:
        prepared = report.phase("params", 0, lambda: working_copy(args.data, scale, env["compile"]))
        if prepared is not None:
            work = Path(prepared["work"])
            stage_budget = min(scale["stage_budget"], report.left())
            report.phase("stages", 60, lambda: run_stages(work, args.out, report, stage_budget))
            shutil.rmtree(work, ignore_errors=True)  # the weights stay on the machine, out of the next phases' way
    if "attention" in args.phases:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        report.phase("attention", 30, lambda: helper_script("attention_check.py", ["--device", device], scratch, 120))
    if "step" in args.phases:
        report.phase("step", 60, lambda: step_variants(scale["step"], scratch, timeout=max(1.0, report.left())))
    print(markdown(report.results), flush=True)


if __name__ == "__main__":
    main()
