"""The schema of `params.yaml` and `runtime.yaml`, validated once for every stage.

`params.yaml` says what a run computes: every key changes results, DVC tracks each one and
`dvc exp show` compares them. `runtime.yaml` says how this machine runs it (launcher, device,
compilation, batch size for inference, logging and checkpoint intervals): nothing there
changes a result beyond floating-point rounding, so DVC reruns nothing when it changes.

Each section is a pydantic model that forbids unknown keys and is strict about types, so a
typo or a quoted number fails at start with a message naming the key, instead of silently
falling back to a default deep inside a run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from minigpt.errors import MiniGPTError

PARAMS_FILE = "params.yaml"
RUNTIME_FILE = "runtime.yaml"  # beside params.yaml; optional: a missing key takes its default
Device = Literal["auto", "cpu", "cuda"]  # auto: the GPU when CUDA has one, else the CPU
DEVICES = get_args(Device)
# Weight formats for answering (python -m minigpt ... --weights): see minigpt/quantize.py.
WeightFormat = Literal["fp32", "bf16", "int8"]
WEIGHT_FORMATS = get_args(WeightFormat)
# Ways to run a training step that compute the same thing (to rounding), each measured on and off
# by benchmarks/train_step.py: see docs/training.md.
Speedup = Literal["chunked_loss", "bf16_residual", "compiled_optimizer"]
SPEEDUPS = get_args(Speedup)
# How training rows hold examples: see minigpt/packing.py.
PackingLayout = Literal["masked", "open", "padded"]
PACKING_LAYOUTS = get_args(PackingLayout)


class Section(BaseModel):
    # No infinities or NaNs: `epochs: .inf` or `temperature: .nan` is never what anyone meant.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


# What torch, numpy and Python's random all accept as a seed.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


class Location(Section):
    """Where a dataset is: a local file (glob allowed) or a Hugging Face Hub dataset (an
    `owner/name` id at a revision, or a local folder laid out like one)."""

    path: str | None = None
    hub: str | None = None
    config: str | None = None  # a hub dataset's configuration (subset) name
    split: str | None = None
    revision: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _one_location(self) -> Location:
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of 'path' (a local file or glob) or 'hub' (a dataset id)")
        if self.hub is not None and not self.revision and not self.local_hub:
            raise ValueError(
                f"hub dataset {self.hub!r} needs a 'revision': a commit hash, or a branch or tag that "
                "is resolved to its commit and recorded"
            )
        if self.path is not None and (self.config, self.split, self.revision) != (None, None, None):
            raise ValueError("'config', 'split' and 'revision' apply to hub datasets only, not to 'path'")
        return self

    @property
    def local_hub(self) -> bool:
        """Whether `hub` is a folder laid out like a hub repository rather than an `owner/name` id."""
        return self.hub is not None and (
            self.hub.startswith((".", "/", "~")) or self.hub.count("/") > 1 or Path(self.hub).is_dir()
        )

    @property
    def hub_split(self) -> str:
        return self.split or "train"

    @property
    def label(self) -> str:
        return self.name or self.path or f"{self.hub}@{self.revision}:{self.hub_split}"


class Source(Location):
    """One input dataset of instructions for `prepare`."""

    kind: Literal["alpaca", "oasst", "jsonl"]
    # oasst only: "best", the best-ranked reply of each turn, following the best branch; "all",
    # every Spanish assistant reply of every Spanish thread, each with its prompt and history.
    replies: Literal["best", "all"] = "best"

    @model_validator(mode="after")
    def _replies_for_oasst(self) -> Source:
        if self.replies != "best" and self.kind != "oasst":
            raise ValueError(f"'replies' applies to oasst sources, not to kind {self.kind!r}")
        return self


class CorpusSource(Location):
    """One plain-text corpus for `corpus`: .txt files (blank-line separated documents), .jsonl or
    .parquet files, or a hub dataset, streamed; each record's `text_column` is a document."""

    kind: Literal["text"] = "text"  # the only kind of corpus source, read by minigpt/sources/text.py
    text_column: str = Field(default="text", min_length=1)
    max_tokens: int = Field(default=0, ge=0)  # stop reading this source after this many tokens; 0: no limit


class CorpusParams(Section):
    """Plain text for pretraining, tokenized once into token shards."""

    sources: list[CorpusSource] = []
    max_tokens: int = Field(default=0, ge=0)  # stop reading once the shards hold this many tokens; 0: no limit
    min_chars: int = Field(default=0, ge=0)  # shorter documents are skipped
    min_language_score: float = Field(default=0.0, ge=0, le=1)  # where a source has `language_score`
    validation_fraction: float = Field(default=0.01, gt=0, lt=1)  # share of documents held out, by hash
    shard_tokens: int = Field(default=50_000_000, ge=1)  # a shard closes at the first document end past this


class PrepareParams(Section):
    sources: list[Source] = Field(min_length=1)
    on_error: Literal["fail", "skip"] = "fail"
    max_skipped_share: float = Field(default=0.1, ge=0, le=1)
    on_source_loss: Literal["warn", "fail"] = "warn"
    max_chars: int = Field(gt=0)
    spanish_threshold: float = Field(ge=0, le=1)
    spanish_min_evidence: int = Field(ge=1)
    validation_fraction: float = Field(gt=0, lt=1)
    split_by: Literal["group", "prompt", "instruction", "pair"] = "group"
    split_seed: Seed = 0
    categories: dict[str, list[str]]
    default_category: str = Field(min_length=1)


class TokenizerParams(Section):
    vocab_size: int = Field(ge=300, le=1_000_000)
    min_frequency: int = Field(ge=1)
    model_max_length: int = Field(gt=0)
    corpus_chars: int = Field(default=0, ge=0)  # characters of the corpus (corpus.sources) it also learns from
    eval_files: dict[str, str] = {}
    reference_tokenizers: dict[str, str] = {}


class ModelParams(Section):
    """The GPT's shape, shared by `pretrain` and `train` (one model, two phases)."""

    n_layer: int = Field(ge=1)
    n_head: int = Field(ge=1)
    n_embd: int = Field(ge=8)
    block_size: int = Field(ge=8)
    dropout: float = Field(ge=0, lt=1)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelParams:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        return self


class OptimizerParams(Section):
    """AdamW and its schedule: linear warmup, then cosine decay to min_lr_ratio."""

    learning_rate: float = Field(gt=0)
    min_lr_ratio: float = Field(ge=0, le=1)
    warmup_steps: int = Field(ge=0)
    weight_decay: float = Field(ge=0, le=1)  # decoupled (AdamW): past 1, decay outruns the updates
    beta1: float = Field(ge=0, lt=1)
    beta2: float = Field(ge=0, lt=1)
    grad_clip: float = Field(ge=0)


class LoopParams(OptimizerParams):
    """One run of the training loop: how long, how big a step, how often to measure validation loss."""

    epochs: float = Field(gt=0, le=10_000)
    train_tokens: int = Field(default=0, ge=0)  # train on this many tokens instead of `epochs`; 0: epochs decide
    max_steps: int = Field(default=0, ge=0)  # stop after this many optimizer steps (the schedule too); 0: no limit
    packing: PackingLayout = "masked"
    micro_batch_size: int = Field(ge=1)
    batch_tokens: int = Field(ge=1)
    eval_every: int = Field(ge=0)  # steps; 0: never (no validation loss)
    eval_rows: int = Field(ge=0)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    seed: Seed = 0


class PretrainParams(LoopParams):
    """Pretraining on the token shards of `corpus`: windows of the corpus, not packed examples."""

    packing: Literal["masked", "open"] = "masked"  # windows cut documents anywhere: nothing to pad


class TrainParams(LoopParams):
    train_on_prompt: bool = False
    init_from: Literal["scratch", "pretrained"] = "scratch"


class LoraParams(LoopParams):
    """LoRA adapters trained on the examples of some categories, starting from models/minigpt."""

    categories: list[str] = Field(min_length=1)
    rank: int = Field(ge=1)
    alpha: float = Field(gt=0)
    dropout: float = Field(ge=0, lt=1)
    target_modules: list[str] = Field(min_length=1)
    merge: bool = False  # also write base + adapter merged into a plain model
    qlora: bool = False  # 4-bit base weights (bitsandbytes, CUDA only)

    @model_validator(mode="after")
    def _untied_targets(self) -> LoraParams:
        if {"lm_head", "wte"} & set(self.target_modules):
            raise ValueError(
                "target_modules cannot include lm_head or wte: they share one weight, which an "
                "adapter would change twice when merged"
            )
        return self


class EvaluateParams(Section):
    generate_examples: int = Field(ge=0)  # validation examples answered by generation; 0 = all
    max_new_tokens: int = Field(ge=1)
    sampled_answers: bool = True  # also answer with the sampling settings below (seeded), beside greedy
    temperature: float = Field(gt=0, le=5)  # as the command line allows
    top_p: float = Field(gt=0, le=1)
    top_k: int = Field(ge=0)
    repetition_penalty: float = Field(gt=0)
    seed: Seed = 0
    multiple_choice: dict[str, str] = {}


class ArchitecturesParams(ModelParams, OptimizerParams):
    """The encoder-vs-decoder study: one shape for both (the encoder's MLP is resized to match
    the decoder's parameter count), the same data and steps, repeated over seeds."""

    steps: int = Field(ge=5)
    micro_batch_size: int = Field(ge=1)
    mask_probability: float = Field(gt=0, lt=1)  # the encoder's masked-LM rate (BERT: 0.15)
    # Three runs each at least: with two, identical architectures look different a third of the time.
    seeds: list[Seed] = Field(min_length=3)
    probe_examples: int = Field(ge=0)  # train-split examples the category probe is fit on; 0 = all
    demo_examples: int = Field(ge=0)  # validation examples the decoder answers and the encoder fills

    @model_validator(mode="after")
    def _distinct_seeds(self) -> ArchitecturesParams:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(
                f"seeds must differ (got {self.seeds}): a repeated seed repeats a run and hides the spread"
            )
        return self


class RuntimeParams(Section):
    """How this machine runs the stages (`runtime.yaml`): where, how fast, how often to log and save."""

    launcher: str = Field(default="python", min_length=1)  # how dvc.yaml starts pretrain, train and lora
    device: Device = "auto"  # evaluate, evaluate_lora, compare_architectures (training: where accelerate puts it)
    compile: bool = False  # torch.compile the training steps of every loop and of the study
    attention: Literal["sdpa", "flex"] = "sdpa"  # how training attends over document-masked rows (minigpt.model)
    speedups: list[Speedup] = []  # training-step options under measurement: see docs/training.md
    inference_batch_size: int = Field(default=16, ge=1)  # sequences per forward pass when scoring and generating
    log_every: int = Field(default=10, ge=1)  # steps between logged training losses
    checkpoint_every: int = Field(default=50, ge=0)  # steps; 0: never (a killed run restarts from scratch)
    keep_checkpoints: int = Field(default=2, ge=1)
    # Delete a stage's checkpoints once its model, metrics and curves are saved: they only resume
    # a run that did not finish (1.3 GB each at the seed shape).
    drop_checkpoints: bool = False

    @model_validator(mode="after")
    def _compiled_optimizer_with_compile(self) -> RuntimeParams:
        if "compiled_optimizer" in self.speedups and not self.compile:
            raise ValueError("speedups: compiled_optimizer needs compile: true")
        return self

    def processes(self) -> int:
        """The processes `launcher` starts (`--num_processes N` of accelerate launch), else 1."""
        found = re.search(r"--num_processes[ =](\d+)", self.launcher)
        return int(found.group(1)) if found else 1


def batch_split_problem(
    batch_tokens: int,
    micro_batch_size: int,
    block_size: int,
    processes: int,
    names: tuple[str, str, str] = ("micro_batch_size", "block_size", "processes"),
) -> str | None:
    """Why a step of `batch_tokens` tokens does not split into micro-batches of `micro_batch_size`
    rows of `block_size` tokens on each of `processes`, or None when it does (`names`: how the
    message calls the three)."""
    row_tokens = micro_batch_size * block_size * processes
    if batch_tokens % row_tokens == 0:
        return None
    factors = f"{names[0]} × {names[1]}" + (f" × {processes} {names[2]}" if processes > 1 else "")
    values = f"{micro_batch_size} × {block_size}" + (f" × {processes}" if processes > 1 else "")
    return f"({batch_tokens}) must be a multiple of {factors} = {values} = {row_tokens}"


class Params(Section):
    prepare: PrepareParams
    tokenizer: TokenizerParams
    corpus: CorpusParams = CorpusParams()
    model: ModelParams
    pretrain: PretrainParams
    train: TrainParams
    evaluate: EvaluateParams
    lora: LoraParams
    compare_architectures: ArchitecturesParams
    runtime: RuntimeParams = RuntimeParams()  # read from runtime.yaml, not params.yaml

    @model_validator(mode="after")
    def _sections_agree(self) -> Params:
        """Rules that span sections, checked before any stage runs rather than hours into one."""
        problems = []
        block = self.model.block_size
        loops = ["train", "lora"] + (["pretrain"] if self.corpus.sources else [])  # pretrain off: nothing to check
        processes = self.runtime.processes()
        for name in loops:
            loop: LoopParams = getattr(self, name)
            problem = batch_split_problem(
                loop.batch_tokens,
                loop.micro_batch_size,
                block,
                processes,
                names=(f"{name}.micro_batch_size", "model.block_size", f"processes (launcher, {RUNTIME_FILE})"),
            )
            if problem:
                problems.append(f"{name}.batch_tokens {problem}")
        for name, length in (
            ("model.block_size", block),
            ("compare_architectures.block_size", self.compare_architectures.block_size),
        ):
            if length > self.tokenizer.model_max_length:
                problems.append(
                    f"{name} ({length}) is above the tokenizer's limit "
                    f"(tokenizer.model_max_length = {self.tokenizer.model_max_length})"
                )
        if self.evaluate.max_new_tokens >= block:
            problems.append(
                f"evaluate.max_new_tokens ({self.evaluate.max_new_tokens}) leaves no room for a prompt in "
                f"model.block_size ({block})"
            )
        known = set(self.prepare.categories) | {self.prepare.default_category}
        unknown = [name for name in self.lora.categories if name not in known]
        if unknown:
            problems.append(
                f"lora.categories {unknown} are not categories of prepare (known: {', '.join(sorted(known))})"
            )
        if self.train.init_from == "pretrained" and not self.corpus.sources:
            problems.append("train.init_from is 'pretrained' but corpus.sources is empty: nothing would be pretrained")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _format_location(location: tuple) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_mapping(path: Path, missing_ok: bool) -> dict:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise MiniGPTError(f"{path} not found: run the stages from the repository root") from None
    except yaml.YAMLError as error:
        raise MiniGPTError(f"{path} is not valid YAML: {error}") from None
    if raw is not None and not isinstance(raw, dict):
        raise MiniGPTError(f"{path} must be a mapping of keys to values, not a {type(raw).__name__}")
    return raw or {}


def _validated(model: type[BaseModel], raw: dict, path: Path):
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            text = f"  {_format_location(item['loc']) or '(top level)'}: {item['msg']}"
            if item["type"] != "missing":
                text += f" (got {_shorten(repr(item['input']))})"
            if item["type"] == "extra_forbidden" and model is Params and item["loc"][-1] in RuntimeParams.model_fields:
                text += f": it is a runtime setting, set once in {RUNTIME_FILE}"
            problems.append(text)
        raise MiniGPTError(f"{path} has {len(problems)} invalid value(s):\n" + "\n".join(problems)) from None


def load_params(
    path: str | Path = PARAMS_FILE, runtime_path: str | Path | None = None, overrides: dict | None = None
) -> Params:
    """Read and validate the params file and the runtime file beside it (or `runtime_path`);
    raise MiniGPTError naming every bad key and its file. `overrides` (section -> keys, as in a
    preset; its `runtime` section for the runtime file) replace keys before validation."""
    path = Path(path)
    runtime_path = Path(runtime_path) if runtime_path is not None else path.with_name(RUNTIME_FILE)
    raw, raw_runtime = raw_params(path, runtime_path, overrides)
    runtime = _validated(RuntimeParams, raw_runtime, runtime_path)
    return _validated(Params, {**raw, "runtime": runtime}, path)


def raw_params(path: Path, runtime_path: Path, overrides: dict | None = None) -> tuple[dict, dict]:
    """The params file and the runtime file as plain data, `overrides` applied: what
    `load_params` validates."""
    raw = _read_mapping(path, missing_ok=False)
    if "runtime" in raw:
        raise MiniGPTError(f"{path} has a 'runtime' section: runtime settings live in {runtime_path.name}")
    raw_runtime = _read_mapping(runtime_path, missing_ok=True)
    for section, values in (overrides or {}).items():
        if section == "runtime":
            raw_runtime = raw_runtime | values
        else:
            raw[section] = raw.get(section, {}) | values
    return raw, raw_runtime
