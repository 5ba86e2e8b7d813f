"""Stage `compare_architectures`: data/processed + models/tokenizer -> metrics/architectures.json,
plots/architectures.png (encoder-only vs decoder-only, matched, over seeds)."""

from __future__ import annotations

from minigpt import paths
from minigpt.architectures import run_study
from minigpt.config import load_params
from minigpt.data import read_split
from minigpt.errors import run_main
from minigpt.files import write_json
from minigpt.findings import DECODER, ENCODER
from minigpt.plots import runs_and_bars
from minigpt.tokenizer import load_tokenizer


def main() -> None:
    everything = load_params()
    params = everything.compare_architectures
    metrics = run_study(
        params,
        everything.runtime,
        load_tokenizer(paths.TOKENIZER),
        read_split(paths.PROCESSED_DATA, "train"),
        read_split(paths.PROCESSED_DATA, "validation"),
    )
    write_json(paths.ARCHITECTURES_METRICS, metrics)
    summary, probe = metrics["summary"], metrics["probe"]

    def bar(metric: str) -> dict[str, tuple[float, float, float]]:
        return {
            name: (summary[name][metric]["mean"], summary[name][metric]["min"], summary[name][metric]["max"])
            for name in (DECODER, ENCODER)
        }

    runs_and_bars(
        paths.ARCHITECTURES_PLOT,
        {
            name: [([step for step, _ in run["curve"]], [loss for _, loss in run["curve"]]) for run in runs]
            for name, runs in metrics["runs"].items()
        },
        "training loss (each its own task)",
        "step",
        {
            "tokens/s (training)": bar("tokens_per_second"),
            "category probe accuracy": bar("probe_accuracy"),
            "token accuracy (own task)": bar("token_accuracy"),
        },
        baselines={
            "category probe accuracy": {
                "majority class": probe["majority_class_accuracy"],
                "untrained encoder": summary[ENCODER]["untrained_probe_accuracy"]["mean"],
                "untrained decoder": summary[DECODER]["untrained_probe_accuracy"]["mean"],
            },
            "token accuracy (own task)": {"token frequencies": metrics["unigram"]["token_accuracy"]},
        },
    )
    print(f"compare_architectures: {paths.ARCHITECTURES_METRICS}, {paths.ARCHITECTURES_PLOT}")


if __name__ == "__main__":
    run_main(main)
