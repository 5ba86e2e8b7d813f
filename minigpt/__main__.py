"""The command line: `python -m minigpt chat|generate|evaluate ...`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from minigpt import paths
from minigpt.config import DEVICES, WEIGHT_FORMATS, Source
from minigpt.errors import MiniGPTError, run_main


def evaluate_command(args: argparse.Namespace) -> None:
    from minigpt.evaluation import evaluate_model
    from minigpt.files import write_json
    from minigpt.generation import SCORING_DTYPE, GenerationSettings, load_model
    from minigpt.metrics import SCORES
    from minigpt.sources import ErrorPolicy, read_source

    examples, _ = read_source(Source(kind="jsonl", path=str(args.data)), ErrorPolicy("fail"))
    if not examples:
        raise MiniGPTError(f"{args.data} holds no examples")
    rows = [
        {"instruction": e.instruction, "input": e.input, "output": e.output, "category": e.category or "general"}
        for e in examples
    ]
    model, tokenizer = load_model(args.model, args.device, lora=args.lora, dtype=SCORING_DTYPE, weights=args.weights)
    choices = {Path(path).stem: str(path) for path in args.choices}
    greedy = {"greedy": GenerationSettings(max_new_tokens=args.max_new_tokens)}
    metrics, samples = evaluate_model(model, tokenizer, rows, choices, greedy, args.generate, args.batch_size)
    if args.out:
        write_json(args.out, {"metrics": metrics, "samples": samples})
    lines = [("examples", metrics["examples"]), *((score.label, score.of(metrics)) for score in SCORES)]
    lines += [
        (f"multiple choice: {name} (chance {score['chance']})", score["accuracy"])
        for name, score in metrics["multiple_choice"].items()
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"{name:<{width}}  {value}")


DEFAULT_NEW_TOKENS = 128


def generate_command(args: argparse.Namespace) -> None:
    from minigpt.generation import GenerationSettings, context_length, generate, load_model, stream
    from minigpt.template import render_prompt, strip_request

    instruction, entrada = strip_request(args.instruction, args.input)
    if not instruction:
        raise MiniGPTError("the instruction is empty: there is nothing to answer (the chat refuses it too)")
    model, tokenizer = load_model(args.model, args.device, lora=args.lora, weights=args.weights)
    prompt = render_prompt(instruction, entrada)
    max_new_tokens = args.max_new_tokens or _room_for_answer(
        len(tokenizer(prompt, add_special_tokens=False)["input_ids"]), context_length(model)
    )
    settings = GenerationSettings(
        max_new_tokens=max_new_tokens,
        do_sample=args.sample,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
    )
    if args.stream:
        for piece in stream(model, tokenizer, prompt, settings):
            print(piece, end="", flush=True)
        print()
    else:
        print(generate(model, tokenizer, [prompt], settings)[0].text)


def _room_for_answer(prompt_tokens: int, context: int) -> int:
    """The default answer length, cut to what the model's context leaves after the prompt."""
    room = context - prompt_tokens
    if room < 1:
        raise MiniGPTError(
            f"the prompt takes {prompt_tokens} tokens and the model's context is {context}: "
            "shorten the instruction or its input"
        )
    if room < DEFAULT_NEW_TOKENS:
        print(
            f"note: answering in up to {room} tokens, what the model's context of {context} leaves after "
            f"the {prompt_tokens}-token prompt (--max-new-tokens sets it)",
            file=sys.stderr,
            flush=True,
        )
    return min(room, DEFAULT_NEW_TOKENS)


def chat_command(args: argparse.Namespace) -> None:
    from minigpt.chat import ChatLimits, ChatModels, launch

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host}: anyone who can reach this machine can use the chat", flush=True)
    lora = None if args.no_lora else args.lora or _default_adapter(args.model)
    models = ChatModels(args.model, lora, args.device, args.weights)
    launch(
        models,
        args.host,
        args.port,
        args.share,
        ChatLimits(max_input_chars=args.max_input_chars, max_seconds=args.max_seconds, concurrency=args.concurrency),
    )


def _default_adapter(model_dir: Path) -> Path | None:
    """The pipeline's adapter, offered when it is complete and was trained on `model_dir`."""
    import json

    from minigpt.lora import has_adapter

    if not has_adapter(paths.ADAPTER):
        return None
    config = json.loads((paths.ADAPTER / "adapter_config.json").read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path") or ""
    if Path(base).resolve() != model_dir.resolve():
        print(
            f"note: {paths.ADAPTER} adapts {base or 'an unnamed model'}, not {model_dir}: offering the base "
            "model only (--lora DIR to choose an adapter)",
            flush=True,
        )
        return None
    return paths.ADAPTER


def _in_range(low: float, high: float, kind=float):
    """argparse type: a number in [low, high]."""

    def parse(text: str):
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m minigpt", description="MiniGPT-ES command line")
    commands = parser.add_subparsers(dest="command", required=True)
    chat = commands.add_parser(
        "chat",
        help="chat with the model in the browser (Gradio)",
        description="Serve a Spanish chat that streams answers from the trained model.",
    )
    chat.add_argument("--model", type=Path, default=paths.MODEL, help="model directory")
    chat.add_argument(
        "--lora",
        type=Path,
        help=f"LoRA adapter directory offered as a second model (default: {paths.ADAPTER} if present)",
    )
    chat.add_argument("--no-lora", action="store_true", help="offer the base model only")
    chat.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    chat.add_argument("--port", type=_in_range(1, 65535, int), default=7860)
    chat.add_argument("--share", action="store_true", help="also publish through a public Gradio link (off by default)")
    chat.add_argument("--concurrency", type=_in_range(1, 64, int), default=1, help="answers generated at once")
    chat.add_argument("--max-input-chars", type=_in_range(1, 100_000, int), default=2000)
    chat.add_argument("--max-seconds", type=_in_range(1, 3600), default=60.0, help="time limit of one answer")
    chat.set_defaults(handler=chat_command)

    generate = commands.add_parser(
        "generate",
        help="answer one instruction",
        description="Answer an instruction with the same template and decoding as evaluation.",
    )
    generate.add_argument("instruction", help="the instruction, in Spanish")
    generate.add_argument("--input", default="", help="the optional input (### Entrada)")
    generate.add_argument("--model", type=Path, default=paths.MODEL, help="model directory")
    generate.add_argument("--lora", type=Path, help="LoRA adapter directory to apply (PEFT format)")
    generate.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    generate.add_argument(
        "--max-new-tokens",
        type=_in_range(1, 4096, int),
        help=f"answer length limit (default: {DEFAULT_NEW_TOKENS}, or less if the model's context leaves less)",
    )
    generate.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    generate.add_argument("--temperature", type=_in_range(0.01, 5.0), default=0.7)
    generate.add_argument("--top-p", type=_in_range(0.01, 1.0), default=0.9)
    generate.add_argument("--top-k", type=_in_range(0, 1000, int), default=0, help="0: no top-k filter")
    generate.add_argument("--repetition-penalty", type=_in_range(1.0, 3.0), default=1.1)
    generate.add_argument("--seed", type=int, default=0)
    generate.set_defaults(handler=generate_command)

    evaluate = commands.add_parser(
        "evaluate",
        help="score a model on an instruction JSONL file",
        description="Score a model directory with the same code as the evaluate stage.",
    )
    evaluate.add_argument("--model", type=Path, default=paths.MODEL, help="model directory")
    evaluate.add_argument("--lora", type=Path, help="LoRA adapter directory to apply (PEFT format)")
    evaluate.add_argument(
        "--data",
        type=Path,
        required=True,
        help="JSONL with instruction / input / output (Alpaca or the project's format)",
    )
    evaluate.add_argument("--choices", type=Path, nargs="*", default=[], help="multiple-choice JSONL files")
    evaluate.add_argument("--out", type=Path, help="write metrics and every answer here (JSON)")
    evaluate.add_argument("--generate", type=_in_range(0, 10**9, int), default=100, help="examples to answer (0 = all)")
    evaluate.add_argument("--max-new-tokens", type=_in_range(1, 4096, int), default=96)
    evaluate.add_argument("--batch-size", type=_in_range(1, 4096, int), default=16)
    evaluate.set_defaults(handler=evaluate_command)
    for command in (chat, generate, evaluate):
        command.add_argument(
            "--device", choices=DEVICES, default="auto", help="auto (default): the GPU if CUDA has one, else the CPU"
        )
        command.add_argument(
            "--weights",
            choices=WEIGHT_FORMATS,
            help="weight format: fp32, bf16, or int8 (CPU only; faster answers on a laptop, see docs/chat.md). "
            "Default: fp32 on a CPU, bf16 on a GPU that has it (fp32 for evaluate)",
        )
    args = parser.parse_args()
    run_main(lambda: args.handler(args))


if __name__ == "__main__":
    main()
