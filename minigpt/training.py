"""The one training loop, used by `pretrain`, `train` and `lora`: loss mask, accelerate,
mixed precision, checkpoints and resume, telemetry. Its rows come from `minigpt.packing`:
examples packed in memory, or windows of a corpus's token shards.

Steps: one optimizer step sees `batch_tokens` tokens (rows × block size), split into
micro-batches and ranks. The loss is the sum over target tokens divided by the number of
target tokens in the whole step, so every target token weighs the same however rows are
split. Rows are visited in a fresh permutation each epoch, drawn from the seed; the data
position and the dropout RNG are functions of the step, so restoring the step restores both.

Checkpoints hold the model, the optimizer, the gradient scaler, the step and the metric
history; they are written atomically, the newest `keep_checkpoints` are kept, a corrupt one
is skipped in favour of the one before, and one made with other params is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from minigpt.config import LoopParams, OptimizerParams, RuntimeParams, batch_split_problem
from minigpt.errors import MiniGPTError
from minigpt.files import atomic_file, write_json
from minigpt.model import GPT, IGNORE_INDEX, flops_per_token

# --------------------------------------------------------------------------- schedule and optimizer


def learning_rate(step: int, total_steps: int, params: OptimizerParams) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio × learning_rate at the last step."""
    if step < params.warmup_steps:
        return params.learning_rate * (step + 1) / params.warmup_steps
    progress = (step - params.warmup_steps) / max(1, total_steps - params.warmup_steps)
    floor = params.learning_rate * params.min_lr_ratio
    return floor + (params.learning_rate - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(model: torch.nn.Module, params: OptimizerParams, fused: bool) -> torch.optim.AdamW:
    """AdamW with weight decay on every 2-D tensor, embeddings included (as nanoGPT); none on biases or LayerNorms."""
    decayed = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    plain = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decayed, "weight_decay": params.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=params.learning_rate, betas=(params.beta1, params.beta2), fused=fused)


def set_learning_rate(optimizer: torch.optim.Optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        if torch.is_tensor(group["lr"]):  # a compiled step's: changed in place, never a new graph
            group["lr"].fill_(value)
        else:
            group["lr"] = value


def compiled_step(optimizer, device: torch.device) -> Callable[[], None]:
    """accelerate's `optimizer.step`, compiled into fused kernels. The learning rate becomes a
    tensor on the device first: as a Python float, every new value would compile a new graph.
    Under fp16's gradient scaler the step stays uncompiled: the scaler must see it, to skip
    the steps whose gradients overflowed."""
    if getattr(optimizer, "scaler", None) is not None:
        print("compiled_optimizer: off under fp16's gradient scaler", flush=True)
        return optimizer.step
    inner = optimizer.optimizer  # the torch optimizer accelerate wraps
    for group in inner.param_groups:
        group["lr"] = torch.tensor(float(group["lr"]), device=device)
    return torch.compile(inner.step)


# --------------------------------------------------------------------------- hardware

# Dense bf16 (fp16 where the chip has no bf16) tensor-core peaks in FLOP/s, for MFU.
# Matched by substring in order, so specific names come before their prefixes.
PEAK_FLOPS = [
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10G", 70e12),
    ("A10", 125e12),
    ("T4", 65e12),
    ("V100", 125e12),
    ("RTX 4090", 165e12),
]


def device_peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_FLOPS if key in name), None)


def resolve_precision(precision: str) -> str:
    """accelerate's mixed_precision for a params value: bf16 where supported, else fp16, CPU fp32."""
    if precision == "auto":
        if not torch.cuda.is_available():
            return "no"
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    if precision != "fp32" and not torch.cuda.is_available():
        raise MiniGPTError(f"precision {precision} needs a GPU: use precision auto or fp32 on a CPU")
    return {"fp32": "no"}.get(precision, precision)


# --------------------------------------------------------------------------- checkpoints


class CheckpointStore:
    def __init__(self, directory: Path, keep: int):
        self.directory = directory
        self.keep = keep

    def paths(self) -> list[Path]:
        return sorted(self.directory.glob("step-*.pt"))

    def save(self, state: dict[str, Any]) -> None:
        path = self.directory / f"step-{state['step']:08d}.pt"
        with atomic_file(path, "wb") as handle:
            torch.save(state, handle)
        for old in self.paths()[: -self.keep]:
            old.unlink()

    def load_latest(self, fingerprint: str) -> tuple[dict[str, Any] | None, bool]:
        """(the newest readable checkpoint of this run or None, whether another run's are here)."""
        for path in reversed(self.paths()):
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as error:  # truncated or corrupt: fall back to the previous one
                print(f"checkpoint {path} is unreadable ({type(error).__name__}); trying the previous one")
                continue
            if state.get("fingerprint") != fingerprint:
                print(f"checkpoint {path} was made with other params, data, weights or code: starting afresh")
                return None, True
            return state, False
        return None, False

    def clear(self) -> None:
        for path in self.paths():
            path.unlink()


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def weights_fingerprint(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def code_fingerprint() -> str:
    """The source of the model, its adapters and this loop: other code is another run."""
    package = Path(__file__).parent
    return fingerprint(*((package / name).read_text() for name in ("model.py", "lora.py", "training.py")))


# Params that change how a run is measured or saved, not what it trains: a run may resume across
# them (and across every runtime setting).
RUN_NEUTRAL_PARAMS = {"eval_every", "eval_rows", "merge"}


# --------------------------------------------------------------------------- telemetry

SPEED_KEYS = ("tokens_per_second", "mfu")


def eta(seconds: float) -> str:
    """Time left, as a log line shows it: 45s, 12m05s, 3h20m."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Telemetry:
    """Metric history for one run: printed, kept for checkpoints, mirrored to dvclive if installed."""

    def __init__(self, live_dir: Path | None, history: list[dict], enabled: bool):
        self.history = list(history)
        self.enabled = enabled
        self.live = None
        if not enabled or live_dir is None:
            return
        try:
            from dvclive import Live
        except ImportError:
            print("dvclive is not installed: metrics are kept in the checkpoints and metrics files only")
            return
        shutil.rmtree(live_dir, ignore_errors=True)  # rebuilt from the history: no steps logged twice
        self.live = Live(str(live_dir), dvcyaml=False, save_dvc_exp=False)
        for entry in self.history:
            self._to_live(entry)

    def _to_live(self, entry: dict) -> None:
        self.live.step = entry["step"]
        for name, value in entry.items():
            # Speeds change from run to run: they stay out of dvclive's files, which dvc.lock hashes,
            # and live in the console and metrics/train.json.
            if name not in ("step", *SPEED_KEYS):
                self.live.log_metric(name, value)
        self.live.make_summary()

    def log(self, step: int, note: str = "", **metrics: float) -> None:
        """Record one step's metrics and print them, with `note` (console only) after them."""
        if not self.enabled:
            return
        entry = {"step": step, **{name: round(float(value), 6) for name, value in metrics.items()}}
        self.history.append(entry)
        if self.live is not None:
            self._to_live(entry)
        shown = (
            f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}" for name, value in entry.items()
        )
        print(" ".join([*shown, note]).rstrip(), flush=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.end()


class CompileWatch:
    """What torch.compile did during one run, from dynamo's process-wide counters (deltas from
    the run's start). A frame dynamo gives up on (an error it was told to suppress, the
    recompile limit) runs eagerly without a word: counted here, it makes `compiled` false
    instead of letting eager speed pass for compiled speed. (A graph compiled earlier in the
    process for another model of the same shape is reused, and counts as compiled.)"""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.start = self._read()
        self.after_first_step: dict[str, int] | None = None

    @staticmethod
    def _read() -> dict[str, int]:
        from torch._dynamo.utils import counters

        return {
            "frames": counters["frames"]["total"],
            "compiled_frames": counters["frames"]["ok"],
            "graphs": counters["stats"]["unique_graphs"],
            "graph_breaks": sum(counters["graph_break"].values()),
        }

    def first_step_done(self) -> None:
        if self.after_first_step is None:
            self.after_first_step = self._read()

    def summary(self) -> dict[str, Any]:
        """`compiled`: no frame was left to run eagerly; `recompiles`: graphs compiled after the
        first step (evaluation's, a changed shape); `eager_frames`: frames left to run eagerly."""
        if not self.enabled:
            return {"compiled": False, "recompiles": 0, "eager_frames": 0, "graph_breaks": 0}
        now = self._read()
        delta = {key: now[key] - self.start[key] for key in now}
        eager = delta["frames"] - delta["compiled_frames"]
        first = self.after_first_step or now
        return {
            "compiled": eager == 0,
            "recompiles": now["graphs"] - first["graphs"],
            "eager_frames": eager,
            "graph_breaks": delta["graph_breaks"],
        }


# --------------------------------------------------------------------------- the loop


@dataclass
class RunResult:
    model: GPT  # unwrapped, on the training device
    steps: int
    history: list[dict] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    is_main_process: bool = True


class RowOrder:
    """Row indices of each global step: epochs are consecutive permutations drawn from the seed.

    Each epoch's permutation is drawn on the CPU (the same on every device and rank) and moved
    to the training device once, so a step costs no host work and no host-to-device copy that
    would make the host wait for the GPU."""

    def __init__(self, rows: int, rows_per_step: int, seed: int, device: torch.device):
        self.rows, self.rows_per_step, self.seed, self.device = rows, rows_per_step, seed, device
        self._epochs: dict[int, torch.Tensor] = {}

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._epochs:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._epochs = {e: p for e, p in self._epochs.items() if e >= epoch - 1}  # a step spans two at most
            self._epochs[epoch] = torch.randperm(self.rows, generator=generator).to(self.device)
        return self._epochs[epoch]

    def step(self, step: int) -> torch.Tensor:
        first, last = step * self.rows_per_step, (step + 1) * self.rows_per_step
        parts = []
        for epoch in range(first // self.rows, (last - 1) // self.rows + 1):
            start, stop = max(first - epoch * self.rows, 0), min(last - epoch * self.rows, self.rows)
            parts.append(self._permutation(epoch)[start:stop])
        return parts[0] if len(parts) == 1 else torch.cat(parts)


class TrainingRows(Protocol):
    """What the loop trains on: `PackedRows` (examples packed in memory, moved to the device
    once) or `ShardWindows` (windows of a tokenized corpus, read from disk as needed)."""

    stats: dict[str, Any]

    def __len__(self) -> int: ...
    def fingerprint(self) -> str: ...
    def to(self, device: torch.device) -> TrainingRows: ...
    @property
    def index_device(self) -> torch.device: ...
    def count_targets(self, indices: torch.Tensor) -> torch.Tensor | int: ...
    def batch(self, indices: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor | None]: ...


def planned_steps(params: LoopParams, rows: int, rows_per_step: int, block: int) -> int:
    """Optimizer steps of a run: `train_tokens` or `epochs` over the rows, capped by `max_steps`."""
    if params.train_tokens:
        steps = math.ceil(params.train_tokens / (rows_per_step * block))
    else:
        steps = math.ceil(params.epochs * rows / rows_per_step)
    steps = max(1, steps)
    return min(steps, params.max_steps) if params.max_steps else steps


@dataclass(frozen=True)
class Cadence:
    """Which of a run's periodic jobs fall on a step (the number of steps done), each by its own
    rule: evaluation at the multiples of eval_every and the last step, whatever the others are."""

    total_steps: int
    log_every: int
    eval_every: int  # 0: never
    checkpoint_every: int  # 0: never

    def evaluate(self, done: int) -> bool:
        return self.eval_every > 0 and (done % self.eval_every == 0 or done == self.total_steps)

    def checkpoint(self, done: int) -> bool:
        # Also before each evaluation while checkpoints are on: a crash in it loses nothing.
        return self.checkpoint_every > 0 and (done % self.checkpoint_every == 0 or self.evaluate(done))

    def log(self, done: int) -> bool:
        # The first step's loss is the untrained model's, the start of the curve; the last steps
        # count in the summary; a checkpoint saves the history up to its step.
        return done == 1 or done % self.log_every == 0 or done == self.total_steps or self.checkpoint(done)


def train_loop(
    model: GPT,
    train_rows: TrainingRows,
    val_rows: TrainingRows,
    params: LoopParams,
    runtime: RuntimeParams,
    checkpoint_dir: Path,
    live_dir: Path | None,
) -> RunResult:
    """Train `model` on `train_rows`, resuming from `checkpoint_dir` when a matching checkpoint exists."""
    run = TrainingRun(model, train_rows, val_rows, params, runtime, checkpoint_dir, live_dir)
    cadence = Cadence(run.total_steps, runtime.log_every, params.eval_every, runtime.checkpoint_every)
    if run.resumed and cadence.evaluate(run.start_step) and not run.evaluated(run.start_step):
        run.evaluate(run.start_step)  # checkpoints are written before evaluating: a resumed run may owe one
    for step in range(run.start_step, run.total_steps):
        run.step(step)
        done = step + 1
        if cadence.log(done):
            run.log(done)
        if cadence.checkpoint(done):
            run.save(done)
        if cadence.evaluate(done):
            run.evaluate(done)
    return run.finish()


class TrainingRun:
    """One run of the loop: its setup and resume, one optimizer step, and the jobs the cadence
    calls (log, save, evaluate), each a method `train_loop` calls in turn."""

    def __init__(
        self,
        model: GPT,
        train_rows: TrainingRows,
        val_rows: TrainingRows,
        params: LoopParams,
        runtime: RuntimeParams,
        checkpoint_dir: Path,
        live_dir: Path | None,
    ):
        from accelerate import Accelerator

        self.model, self.val_rows, self.params, self.runtime = model, val_rows, params, runtime
        self.accelerator = accelerator = Accelerator(
            cpu=not torch.cuda.is_available(), mixed_precision=resolve_precision(params.precision)
        )
        self.world, self.rank, device = accelerator.num_processes, accelerator.process_index, accelerator.device
        self.device = device
        self.block = block = model.config.block_size
        problem = batch_split_problem(params.batch_tokens, params.micro_batch_size, block, self.world)
        if problem:
            raise MiniGPTError(f"batch_tokens {problem}")
        self.rows_per_step = params.batch_tokens // block
        self.accumulation = self.rows_per_step // (params.micro_batch_size * self.world)
        self.total_steps = planned_steps(params, len(train_rows), self.rows_per_step, block)
        if params.warmup_steps > self.total_steps and accelerator.is_main_process:
            # Not refused: a rehearsal of a few steps keeps the real run's warmup on purpose.
            print(
                f"warning: warmup_steps ({params.warmup_steps:,}) outlasts this run's {self.total_steps:,} optimizer "
                f"steps: the learning rate peaks at {self.total_steps / params.warmup_steps:.1%} of learning_rate",
                flush=True,
            )
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

        # A run is its params, data, starting weights and code: a checkpoint of anything else is stale.
        self.run_id = fingerprint(
            model.config,
            {k: v for k, v in params.model_dump().items() if k not in RUN_NEUTRAL_PARAMS},
            train_rows.fingerprint(),
            weights_fingerprint(model),
            code_fingerprint(),
        )
        self.checkpoint_dir = checkpoint_dir
        self.store = CheckpointStore(checkpoint_dir, runtime.keep_checkpoints)
        state, stale = self.store.load_latest(self.run_id)
        if stale and accelerator.is_main_process:
            self.store.clear()
        accelerator.wait_for_everyone()
        model.to(device)
        # A compiled optimizer step is its own fused kernel: the unfused AdamW is what it compiles.
        compiled_optimizer = "compiled_optimizer" in runtime.speedups
        optimizer = make_optimizer(model, params, fused=device.type == "cuda" and not compiled_optimizer)
        self.resumed = state is not None
        self.start_step, history, self.tokens_seen, self.elapsed = 0, [], 0, 0.0
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            self.start_step, history = state["step"], state["history"]
            self.tokens_seen, self.elapsed = state["tokens"], state["seconds"]
            if accelerator.is_main_process:
                print(f"resuming from step {self.start_step} of {self.total_steps}")

        if runtime.attention == "flex" and (device.type != "cuda" or model.config.dropout > 0):
            raise MiniGPTError(
                f"attention: flex (runtime.yaml) needs a CUDA device and model dropout 0 (FlexAttention has no "
                f"backward pass on a CPU and no attention dropout); here: {device.type}, dropout "
                f"{model.config.dropout}. Use attention: sdpa"
            )
        # Before compiling: the graph traces the chosen paths.
        model.use_attention(runtime.attention).use_speedups(
            chunked_loss="chunked_loss" in runtime.speedups, bf16_residual="bf16_residual" in runtime.speedups
        )
        # Static shapes: training batches never change size, and a shape seen earlier in the process
        # (another model, a warm-up) must not turn these graphs dynamic and slower.
        # `stepped`: the model as the steps call it, stepped (runtime.compile) and wrapped for the
        # processes by accelerate; `model` stays the plain module whose weights are saved.
        stepped = torch.compile(model, dynamic=False) if runtime.compile else model
        self.compile_watch = CompileWatch(runtime.compile)
        self.stepped, self.optimizer = accelerator.prepare(stepped, optimizer)
        self.step_optimizer = compiled_step(self.optimizer, device) if compiled_optimizer else self.optimizer.step
        if state is not None and state.get("scaler") and accelerator.scaler is not None:
            accelerator.scaler.load_state_dict(state["scaler"])
        self.telemetry = Telemetry(live_dir, history, enabled=accelerator.is_main_process)
        self.peak = device_peak_flops(device)
        self.flops = flops_per_token(model.config, model.num_parameters())
        if accelerator.is_main_process:
            print(
                f"training {model.num_parameters():,} parameters for {self.total_steps} steps of "
                f"{self.rows_per_step} rows × {block} tokens ({self.accumulation} micro-batches × {self.world} "
                f"processes) on {device} with precision {accelerator.mixed_precision}",
                flush=True,
            )

        self.rows = train_rows.to(device)  # packed rows: no copies per step
        self.order = RowOrder(len(train_rows), self.rows_per_step, params.seed, self.rows.index_device)
        # Accumulated on the device and read only when logging: the host never waits inside a step.
        self.loss_sum = torch.zeros((), device=device)
        self.target_count = torch.zeros((), dtype=torch.long, device=device)
        self.gradients_finite = torch.ones((), dtype=torch.bool, device=device)
        self.grad_norm: torch.Tensor | None = None
        # Training time since the last log: evaluating and saving are not training.
        self.interval_seconds, self.interval_tokens = 0.0, 0
        self.interval_started = time.perf_counter()
        self.stepped.train()

    def step(self, step: int) -> None:
        """One optimizer step: `rows_per_step` rows in micro-batches over the processes."""
        params, world, rank = self.params, self.world, self.rank
        set_learning_rate(self.optimizer, learning_rate(step, self.total_steps, params))
        torch.manual_seed(params.seed * 1_000_003 + step * world + rank)
        indices = self.order.step(step)
        step_targets = self.rows.count_targets(indices)  # of the whole step, all ranks: every target weighs the same
        for micro in range(self.accumulation):
            first = (micro * world + rank) * params.micro_batch_size
            batch = self.rows.batch(indices[first : first + params.micro_batch_size], self.device)
            last_micro = micro == self.accumulation - 1
            with contextlib.nullcontext() if last_micro else self.accelerator.no_sync(self.stepped):
                _, loss = self.stepped(**batch, loss_reduction="sum")
                self.accelerator.backward(loss * world / step_targets)
            self.loss_sum += loss.detach()
        self.target_count += step_targets
        clip = params.grad_clip
        self.grad_norm = self.accelerator.clip_grad_norm_(self.stepped.parameters(), clip) if clip else None
        if self.grad_norm is not None and self.accelerator.scaler is None:  # (fp16's scaler skips overflows)
            self.gradients_finite &= torch.isfinite(self.grad_norm)
        self.step_optimizer()
        self.optimizer.zero_grad(set_to_none=True)
        self.compile_watch.first_step_done()
        self.tokens_seen += self.rows_per_step * self.block
        self.interval_tokens += self.rows_per_step * self.block

    def log(self, done: int) -> None:
        """The training loss since the last log, speed and learning rate; stops a diverged run."""
        train_loss = self.accelerator.reduce(self.loss_sum, "sum").item() / self.target_count.item()
        if not math.isfinite(train_loss) or not bool(self.gradients_finite):
            latest = self.store.paths()[-1].name if self.store.paths() else "none"
            what = f"the loss is {train_loss}" if not math.isfinite(train_loss) else "a gradient is not finite"
            raise MiniGPTError(
                f"training diverged: {what} at step {done}. The last good checkpoint "
                f"({latest}) is kept in {self.checkpoint_dir}; lower the learning rate or raise warmup_steps"
            )
        seconds = self._training_seconds()
        self.elapsed += seconds
        tokens_per_second = self.interval_tokens / seconds
        metrics = {
            "train/loss": train_loss,
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "tokens_per_second": tokens_per_second,
        }
        if self.grad_norm is not None:
            metrics["grad_norm"] = float(self.grad_norm)
        if self.peak:
            metrics["mfu"] = self._mfu(tokens_per_second)
        self.telemetry.log(done, note=f"eta {eta(self.elapsed / done * (self.total_steps - done))}", **metrics)
        self.loss_sum.zero_()
        self.target_count.zero_()
        self.interval_seconds, self.interval_tokens = 0.0, 0
        self.interval_started = time.perf_counter()

    def save(self, done: int) -> None:
        with self._not_training():
            if self.accelerator.is_main_process:
                scaler = self.accelerator.scaler
                self.store.save(
                    {
                        "step": done,
                        "model": self.model.state_dict(),
                        "fingerprint": self.run_id,
                        "optimizer": self.optimizer.state_dict(),
                        "history": self.telemetry.history,
                        "tokens": self.tokens_seen,
                        "seconds": self.elapsed,
                        "scaler": scaler.state_dict() if scaler is not None else None,
                    }
                )
            self.accelerator.wait_for_everyone()

    def evaluate(self, done: int) -> None:
        with self._not_training():
            loss = evaluate_loss(self.stepped, self.val_rows, self.params, self.accelerator)
            self.telemetry.log(done, **{"val/loss": loss})
            self.stepped.train()

    def evaluated(self, done: int) -> bool:
        return any(entry["step"] == done and "val/loss" in entry for entry in self.telemetry.history)

    def _training_seconds(self) -> float:
        """Training seconds since the last log, up to now."""
        return self.interval_seconds + time.perf_counter() - self.interval_started

    @contextlib.contextmanager
    def _not_training(self):
        """Time inside is left out of the training seconds (and so of tokens/s)."""
        self.interval_seconds = self._training_seconds()
        yield
        self.interval_started = time.perf_counter()

    def _mfu(self, tokens_per_second: float) -> float:
        return self.flops * tokens_per_second / (self.peak * self.world)

    def finish(self) -> RunResult:
        """The run's summary: totals, speed, and what torch.compile did."""
        self.telemetry.close()
        model, accelerator = self.model, self.accelerator
        tokens_per_second = self.tokens_seen / self.elapsed if self.elapsed else 0.0
        summary = {
            "parameters": model.num_parameters(),
            "steps": self.total_steps,
            "tokens": self.tokens_seen,
            "train_seconds": round(self.elapsed, 2),
            "tokens_per_second": round(tokens_per_second, 1),
            "mfu": round(self._mfu(tokens_per_second), 4) if self.peak else None,
            "device": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
            "processes": self.world,
            "precision": accelerator.mixed_precision,
            **self.compile_watch.summary(),
        }
        if self.runtime.compile and not summary["compiled"] and accelerator.is_main_process:
            print(
                f"warning: torch.compile left {summary['eager_frames']} frame(s) to run eagerly (an error or "
                "the recompile limit; TORCH_LOGS=recompiles says which): this run's speed is not compiled speed",
                flush=True,
            )
        return RunResult(
            model=model,
            steps=self.total_steps,
            history=self.telemetry.history,
            summary=summary,
            is_main_process=accelerator.is_main_process,
        )


@torch.no_grad()
def evaluate_loss(model, rows: TrainingRows, params: LoopParams, accelerator) -> float:
    """Mean loss per target token over `rows` (or eval_rows of them, drawn with the seed:
    packing puts long sequences first), shared across ranks."""
    model.eval()
    count = len(rows) if params.eval_rows == 0 else min(params.eval_rows, len(rows))
    chosen = torch.randperm(len(rows), generator=torch.Generator().manual_seed(params.seed))[:count]
    world, rank = accelerator.num_processes, accelerator.process_index
    total = torch.zeros((), device=accelerator.device)
    targets = torch.zeros((), device=accelerator.device)
    for start in range(rank * params.micro_batch_size, count, world * params.micro_batch_size):
        batch = rows.batch(chosen[start : start + params.micro_batch_size].to(rows.index_device), accelerator.device)
        _, loss = model(**batch, loss_reduction="sum")
        total += loss.float()
        targets += (batch["targets"] != IGNORE_INDEX).sum()
    total, targets = accelerator.reduce(total, "sum"), accelerator.reduce(targets, "sum")
    return (total / targets).item()


@dataclass(frozen=True)
class RunOutputs:
    """Where one stage's training run writes: model, checkpoints, dvclive logs, metrics, curves."""

    model_dir: Path
    checkpoint_dir: Path
    live_dir: Path | None  # None: no dvclive logs
    metrics_file: Path
    plot_file: Path


def last_value(history: list[dict], key: str) -> float | None:
    return next((entry[key] for entry in reversed(history) if key in entry), None)


def loss_change(history: list[dict]) -> dict[str, float | None]:
    """The train loss at the first step (the untrained model's) and at the last logged one, and
    the share by which it fell: what the reference reports as its loss reduction."""
    first = next((entry["train/loss"] for entry in history if "train/loss" in entry), None)
    last = last_value(history, "train/loss")
    return {
        "initial_train_loss": first,
        "train_loss": last,
        "loss_reduction": round(1 - last / first, 4) if first and last is not None else None,
    }


def train_and_save(
    model: GPT,
    train_rows: TrainingRows,
    val_rows: TrainingRows,
    params: LoopParams,
    runtime: RuntimeParams,
    outputs: RunOutputs,
    save_model: Callable[[GPT, Path, dict[str, Any]], None],
    extra_metrics: dict[str, Any] | None = None,
) -> None:
    """Run the loop, then (on the main process) save the model with `save_model(model,
    outputs.model_dir, metrics)` and write metrics and curves."""
    from minigpt.plots import line_charts

    result = train_loop(model, train_rows, val_rows, params, runtime, outputs.checkpoint_dir, outputs.live_dir)
    if not result.is_main_process:
        return
    metrics = {
        **(extra_metrics or {}),
        **loss_change(result.history),
        "val_loss": last_value(result.history, "val/loss"),
        **result.summary,
        "packing": {"train": train_rows.stats, "validation": val_rows.stats},
    }
    save_model(result.model, outputs.model_dir, metrics)
    write_json(outputs.metrics_file, metrics)

    def series(key: str) -> tuple[list[float], list[float]]:
        points = [(entry["step"], entry[key]) for entry in result.history if key in entry]
        return [step for step, _ in points], [value for _, value in points]

    line_charts(
        outputs.plot_file,
        {
            "loss per target token": {"train": series("train/loss"), "validation": series("val/loss")},
            "learning rate": {"lr": series("lr")},
        },
        xlabel="step",
    )
    if runtime.drop_checkpoints:  # the run is complete and saved: nothing left to resume
        shutil.rmtree(outputs.checkpoint_dir, ignore_errors=True)
