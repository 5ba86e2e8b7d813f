"""The command line: `python -m minigpt evaluate ...`."""

from __future__ import annotations

import argparse
from pathlib import Path

from minigpt.errors import MiniGPTError, run_main


def evaluate_command(args: argparse.Namespace) -> None:
    from minigpt.config import Source
    from minigpt.data import ErrorPolicy, read_source
    from minigpt.evaluation import evaluate_model
    from minigpt.files import write_json
    from minigpt.generation import GenerationSettings, load_model

    examples, _ = read_source(Source(kind="jsonl", path=str(args.data)), ErrorPolicy("fail"))
    if not examples:
        raise MiniGPTError(f"{args.data} holds no examples")
    rows = [{"instruction": e.instruction, "input": e.input, "output": e.output, "category": e.category or "general"}
            for e in examples]
    model, tokenizer = load_model(args.model, lora=args.lora)
    choices = {Path(path).stem: str(path) for path in args.choices}
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    metrics, samples = evaluate_model(model, tokenizer, rows, choices, settings, args.generate, args.batch_size)
    if args.out:
        write_json(args.out, {"metrics": metrics, "samples": samples})
    generation = metrics["generation"]
    lines = [("examples", metrics["examples"]), ("perplexity (answers)", metrics["perplexity"]),
             ("bits per byte (answers)", metrics["bits_per_byte"]), ("BLEU", generation["bleu"]),
             ("chrF", generation["chrf"]), ("ROUGE-1", generation["rouge1"]), ("ROUGE-2", generation["rouge2"]),
             ("ROUGE-L", generation["rougeL"]), ("coherence", generation["coherence"])]
    lines += [(f"multiple choice: {name} (chance {score['chance']})", score["accuracy"])
              for name, score in metrics["multiple_choice"].items()]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"{name:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m minigpt", description="MiniGPT-ES command line")
    commands = parser.add_subparsers(dest="command", required=True)
    evaluate = commands.add_parser("evaluate", help="score a model on an instruction JSONL file",
                                   description="Score a model directory with the same code as the evaluate stage.")
    evaluate.add_argument("--model", type=Path, default=Path("models/minigpt"), help="model directory")
    evaluate.add_argument("--lora", type=Path, help="LoRA adapter directory to apply (PEFT format)")
    evaluate.add_argument("--data", type=Path, required=True,
                          help="JSONL with instruction / input / output (Alpaca or the project's format)")
    evaluate.add_argument("--choices", type=Path, nargs="*", default=[], help="multiple-choice JSONL files")
    evaluate.add_argument("--out", type=Path, help="write metrics and every answer here (JSON)")
    evaluate.add_argument("--generate", type=int, default=100, help="examples to answer (0 = all)")
    evaluate.add_argument("--max-new-tokens", type=int, default=96)
    evaluate.add_argument("--batch-size", type=int, default=16)
    evaluate.set_defaults(handler=evaluate_command)
    args = parser.parse_args()
    if getattr(args, "generate", 0) < 0 or getattr(args, "max_new_tokens", 1) < 1 or getattr(args, "batch_size", 1) < 1:
        parser.error("--generate must be ≥ 0, --max-new-tokens and --batch-size ≥ 1")
    run_main(lambda: args.handler(args))


if __name__ == "__main__":
    main()
