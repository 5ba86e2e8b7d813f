"""The command line: `python -m minigpt chat|generate|evaluate|export|hub ...`."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from minigpt import paths
from minigpt.config import DEVICES, WEIGHT_FORMATS, Source
from minigpt.decoding import CHAT_SAMPLING, GREEDY
from minigpt.errors import MiniGPTError, run_main


def evaluate_command(args: argparse.Namespace) -> None:
    from minigpt.evaluation import evaluate_model
    from minigpt.files import check_writable, write_json
    from minigpt.generation import SCORING_DTYPE, load_model
    from minigpt.metrics import SCORES
    from minigpt.sources import ErrorPolicy, read_source

    if args.out:
        check_writable(args.out)
    if args.data is None and not args.choices:
        raise MiniGPTError("nothing to evaluate: give --data (instructions to answer), --choices or both")
    examples = read_source(Source(kind="jsonl", path=str(args.data)), ErrorPolicy("fail"))[0] if args.data else []
    if args.data and not examples:
        raise MiniGPTError(f"{args.data} holds no examples")
    rows = [
        {"instruction": e.instruction, "input": e.input, "output": e.output, "category": e.category or "general"}
        for e in examples
    ]
    model, tokenizer = load_model(args.model, args.device, lora=args.lora, dtype=SCORING_DTYPE, weights=args.weights)
    choices = {Path(path).stem: str(path) for path in args.choices}
    greedy = {"greedy": replace(GREEDY, max_new_tokens=args.max_new_tokens)}
    metrics, samples = evaluate_model(
        model, tokenizer, rows, choices, greedy, args.generate, args.batch_size, progress="evaluate"
    )
    if args.out:
        write_json(args.out, {"metrics": metrics, "samples": samples})
    lines = [("examples", metrics["examples"]), *((score.label, score.of(metrics)) for score in SCORES)] if rows else []
    lines += [
        (f"multiple choice: {name} (chance {score['chance']})", score["accuracy"])
        for name, score in metrics["multiple_choice"].items()
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"{name:<{width}}  {value}")


def export_command(args: argparse.Namespace) -> None:
    from minigpt.gguf_export import default_output, export_gguf

    out = export_gguf(args.model, args.out or default_output(args.model, args.type), args.type)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, {args.type}): docs/chat.md shows how to chat with it")


def hub_command(args: argparse.Namespace) -> None:
    from minigpt.hub import export_hub

    for repo_id, folder in export_hub(args.out, args.repo_id).items():
        print(f"wrote {folder}: upload it with 'hf upload {repo_id} {folder}'")


DECODING_OPTIONS = ("temperature", "top_p", "top_k", "repetition_penalty")  # None: the decoding's default


def generate_command(args: argparse.Namespace) -> None:
    from minigpt.generation import context_length, generate, load_model, stream
    from minigpt.template import is_valid_text, render_prompt, strip_request

    instruction, entrada = strip_request(args.instruction, args.input)
    if not is_valid_text(instruction, entrada):
        raise MiniGPTError("the instruction or its input is not valid UTF-8: check the terminal's encoding")
    if not instruction:
        raise MiniGPTError("the instruction is empty: there is nothing to answer (the chat refuses it too)")
    model, tokenizer = load_model(args.model, args.device, lora=args.lora, weights=args.weights)
    prompt = render_prompt(instruction, entrada)
    max_new_tokens = args.max_new_tokens or _room_for_answer(
        len(tokenizer(prompt, add_special_tokens=False)["input_ids"]), context_length(model)
    )
    chosen = {name: getattr(args, name) for name in DECODING_OPTIONS if getattr(args, name) is not None}
    decoding = CHAT_SAMPLING if args.sample else GREEDY
    settings = replace(decoding, max_new_tokens=max_new_tokens, seed=args.seed, **chosen)
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
    if room < GREEDY.max_new_tokens:
        print(
            f"note: answering in up to {room} tokens, what the model's context of {context} leaves after "
            f"the {prompt_tokens}-token prompt (--max-new-tokens sets it)",
            file=sys.stderr,
            flush=True,
        )
    return min(room, GREEDY.max_new_tokens)


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
        description="Answer an instruction with the training template. By default greedy, exactly the "
        "evaluation's greedy answers and the saved generation_config.json (no repetition penalty); "
        f"--sample takes the chat's defaults (temperature {CHAT_SAMPLING.temperature}, top-p {CHAT_SAMPLING.top_p}, "
        f"top-k {CHAT_SAMPLING.top_k}, repetition penalty {CHAT_SAMPLING.repetition_penalty}), each option "
        "below changing one.",
    )
    generate.add_argument("instruction", help="the instruction, in Spanish")
    generate.add_argument("--input", default="", help="the optional input (### Entrada)")
    generate.add_argument("--model", type=Path, default=paths.MODEL, help="model directory")
    generate.add_argument("--lora", type=Path, help="LoRA adapter directory to apply (PEFT format)")
    generate.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    generate.add_argument(
        "--max-new-tokens",
        type=_in_range(1, 4096, int),
        help=f"answer length limit (default: {GREEDY.max_new_tokens}, or less if the model's context leaves less)",
    )
    generate.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    generate.add_argument(
        "--temperature", type=_in_range(0.01, 5.0), help=f"with --sample (default {CHAT_SAMPLING.temperature})"
    )
    generate.add_argument("--top-p", type=_in_range(0.01, 1.0), help=f"with --sample (default {CHAT_SAMPLING.top_p})")
    generate.add_argument(
        "--top-k", type=_in_range(0, 1000, int), help=f"with --sample (default {CHAT_SAMPLING.top_k}; 0: no filter)"
    )
    generate.add_argument(
        "--repetition-penalty",
        type=_in_range(1.0, 3.0),
        help=f"default {GREEDY.repetition_penalty} (none) greedy, {CHAT_SAMPLING.repetition_penalty} with --sample",
    )
    generate.add_argument("--seed", type=int, default=0, help="seed of a sampled answer (default 0)")
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
        help="JSONL with instruction / input / output (Alpaca or the project's format): likelihood and answers",
    )
    evaluate.add_argument(
        "--choices", type=Path, nargs="*", default=[], help="multiple-choice JSONL files (alone: no answers generated)"
    )
    evaluate.add_argument("--out", type=Path, help="write metrics and every answer here (JSON)")
    evaluate.add_argument("--generate", type=_in_range(0, 10**9, int), default=100, help="examples to answer (0 = all)")
    evaluate.add_argument("--max-new-tokens", type=_in_range(1, 4096, int), default=96)
    evaluate.add_argument("--batch-size", type=_in_range(1, 4096, int), default=16)
    evaluate.set_defaults(handler=evaluate_command)

    export = commands.add_parser(
        "export",
        help="write the model in another format (GGUF: llama.cpp, Ollama, LM Studio)",
        description="Convert a model directory into one file for other runtimes (see docs/chat.md).",
    )
    formats = export.add_mutually_exclusive_group(required=True)
    formats.add_argument("--gguf", action="store_true", help="a GGUF file for llama.cpp, Ollama and LM Studio")
    export.add_argument("--model", type=Path, default=paths.MODEL, help="model directory")
    export.add_argument(
        "--type",
        choices=("f16", "q8_0", "f32"),
        default="f16",
        help="weight type of the matrices: f16 (default), q8_0 (smaller and faster on a CPU) or f32",
    )
    export.add_argument(
        "--out", type=Path, help="the .gguf file to write (default: beside the model, e.g. models/minigpt-f16.gguf)"
    )
    export.set_defaults(handler=export_command)

    hub = commands.add_parser(
        "hub",
        help="make folders ready for the Hugging Face Hub: model and adapter with cards holding their results",
        description="Write OUT/NAME (the model) and OUT/NAME-lora (the adapter), each with a card carrying the "
        "evaluation's results, the data with the commits read and a sample conversation; upload each with "
        "'hf upload USER/NAME OUT/NAME'. Nothing is uploaded here.",
    )
    hub.add_argument("repo_id", help="where the model will live on the Hub, USER/NAME (the adapter: USER/NAME-lora)")
    hub.add_argument("--out", type=Path, default=paths.HUB, help=f"folder to write into (default: {paths.HUB})")
    hub.set_defaults(handler=hub_command)
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
