"""The GPT-2 decoder used for training, and its Hugging Face export and import.

A lean module in the style of nanoGPT: fused QKV projection, PyTorch SDPA attention (flash
attention on a GPU), pre-LayerNorm blocks, tanh-approximated GELU and a language-model head
tied to the token embedding. Training rows packed with document masking (see
`minigpt.packing`) pass their document numbers: each packed sequence then gets positions from
0 and attends only to itself. It has exactly GPT-2's parameters and arithmetic, so it
exports to `GPT2LMHeadModel` weight for weight (a test checks the logits match), and users
get a plain Hugging Face model while training runs on the lean module.

Document-masked rows attend through one of two paths, chosen per model (`GPT.use_attention`,
not `GPTConfig`: the path changes rounding, not the model or its export). `sdpa`, the default
and the reference, gives SDPA a dense boolean mask, which rules out flash attention and
computes every block, empty or not. `flex` gives FlexAttention a block mask, which skips the
empty blocks; it is for CUDA (FlexAttention has no backward pass on the CPU) and has no
attention dropout. Rows without documents take SDPA's causal (flash) path either way.

Two more options change how a training step runs, not what it computes (`GPT.use_speedups`):
`chunked_loss` runs the head and the loss over chunks of tokens, each recomputed in the
backward pass, so the [tokens, vocab] logits never exist whole; `bf16_residual` keeps the
residual stream in the autocast dtype instead of fp32.
"""

from __future__ import annotations

import copy
import functools
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention
from torch.utils.checkpoint import checkpoint

from minigpt.errors import MiniGPTError

IGNORE_INDEX = -100  # target positions that carry no loss
VOCAB_MULTIPLE = 128  # embedding rows are padded to this: tensor-core matmuls want aligned sizes
ATTENTION_KINDS = ("sdpa", "flex")  # how document-masked rows attend: see the module's docstring
# Tokens per chunk of the chunked loss: the logits of one chunk at the seed's 32k vocabulary
# are 256 MB in fp32, an eighth of a 32 × 512 micro-batch's.
LOSS_CHUNK_TOKENS = 2048


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding and columns of the head: the vocabulary rounded up to
        VOCAB_MULTIPLE. The extra rows are never looked up and their logits are cut off, so
        the model computes exactly what an unpadded one would."""
        return -(-self.vocab_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | BlockMask | None = None) -> torch.Tensor:
        """`mask`: [batch, 1, time, time] bool (True: may attend) for SDPA, a BlockMask for
        FlexAttention, or None: plain causal attention."""
        batch, time, channels = x.shape
        q, k, v = (
            part.view(batch, time, self.n_head, channels // self.n_head).transpose(1, 2)
            for part in self.c_attn(x).split(channels, dim=2)
        )
        if isinstance(mask, BlockMask):
            y = _flex_attention(q, k, v, mask)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=mask is None, dropout_p=self.dropout if self.training else 0.0
            )
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(batch, time, channels)))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.padded_vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        self.attention = "sdpa"  # one of ATTENTION_KINDS; set by use_attention
        self.chunked_loss = self.bf16_residual = False  # set by use_speedups
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled down by the depth they accumulate over.
        for name, parameter in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def use_attention(self, kind: str) -> GPT:
        """Attend over document-masked rows with `kind` (ATTENTION_KINDS) from now on."""
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"unknown attention {kind!r}: use one of {', '.join(ATTENTION_KINDS)}")
        self.attention = kind
        return self

    def use_speedups(self, chunked_loss: bool = False, bf16_residual: bool = False) -> GPT:
        """Run training steps with the chunked loss and/or the residual stream in the autocast dtype."""
        self.chunked_loss, self.bf16_residual = chunked_loss, bf16_residual
        return self

    def num_parameters(self) -> int:
        """Parameters in use: the tied head counts once, the embedding's padding rows not at all."""
        padding = (self.config.padded_vocab_size - self.config.vocab_size) * self.config.n_embd
        return sum(parameter.numel() for parameter in self.parameters()) - padding

    def hidden_states(self, idx: torch.Tensor, documents: torch.Tensor | None = None) -> torch.Tensor:
        """The last layer's normalised states, [batch, time, n_embd]: what the head reads.

        `documents` [batch, time] numbers the packed sequence each token belongs to: each gets
        positions from 0 and a causal mask within itself. None: each row is one sequence."""
        if documents is None:
            positions, mask = torch.arange(idx.shape[1], device=idx.device), None
        else:
            flex = self.attention == "flex"
            if flex and self.training and self.config.dropout > 0:  # rather than train silently without it
                raise ValueError(
                    f"attention 'flex' needs dropout 0 (FlexAttention has no attention dropout; "
                    f"model dropout is {self.config.dropout}): use sdpa"
                )
            positions = document_positions(documents)
            mask = document_block_mask(documents) if flex else document_mask(documents)
        x = self.drop(self.wte(idx) + self.wpe(positions))
        if self.bf16_residual and torch.is_autocast_enabled(x.device.type):
            # Blocks add bf16 outputs to a bf16 stream: half the bytes of every residual add,
            # LayerNorm read and saved activation. (LayerNorm still computes in fp32 under autocast.)
            x = x.to(torch.get_autocast_dtype(x.device.type))
        for block in self.h:
            x = block(x, mask)
        return self.ln_f(x)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        loss_reduction: str = "mean",
        documents: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits, None) without targets; (None, cross-entropy) with them (positions whose
        target is IGNORE_INDEX carry no loss). Training never gets the logits back: returning
        them would keep a [batch, time, vocab] tensor alive (and accelerate casts outputs to
        fp32), and keeping them inside the graph lets torch.compile fuse head and loss."""
        hidden = self.hidden_states(idx, documents)
        if targets is None:
            return self._logits(hidden), None
        hidden, targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
        if not self.chunked_loss:
            return None, self._loss(hidden, targets, loss_reduction)
        # Each chunk's logits are recomputed in the backward pass instead of kept: one more head
        # matmul per token, and no [tokens, vocab] tensor at all.
        chunks = zip(hidden.split(LOSS_CHUNK_TOKENS), targets.split(LOSS_CHUNK_TOKENS))
        total = sum(checkpoint(self._loss, *chunk, "sum", use_reentrant=False) for chunk in chunks)
        return None, total if loss_reduction == "sum" else total / (targets != IGNORE_INDEX).sum()

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden)[..., : self.config.vocab_size]

    def _loss(self, hidden: torch.Tensor, targets: torch.Tensor, reduction: str) -> torch.Tensor:
        # Under autocast cross_entropy runs in fp32 (it is on autocast's fp32 list).
        return F.cross_entropy(self._logits(hidden), targets, ignore_index=IGNORE_INDEX, reduction=reduction)


def document_positions(documents: torch.Tensor) -> torch.Tensor:
    """[batch, time]: each token's offset from the first token of its document."""
    columns = torch.arange(documents.shape[1], device=documents.device).expand_as(documents)
    starts = torch.ones_like(documents, dtype=torch.bool)
    starts[:, 1:] = documents[:, 1:] != documents[:, :-1]
    return columns - torch.where(starts, columns, 0).cummax(dim=1).values


def document_mask(documents: torch.Tensor) -> torch.Tensor:
    """[batch, 1, time, time] bool: a token attends to the earlier tokens of its own document
    (block-diagonal causal). Padding (document 0) is one block of its own, so that no row of the
    mask is empty (an empty row makes SDPA return NaN); its outputs carry no loss."""
    time = documents.shape[1]
    causal = torch.ones((time, time), dtype=torch.bool, device=documents.device).tril()
    return ((documents[:, :, None] == documents[:, None, :]) & causal)[:, None]


def document_block_mask(documents: torch.Tensor) -> BlockMask:
    """`document_mask` as FlexAttention's block mask, shared by every head and layer: blocks
    where no query sees a key (other documents, the future) are skipped, not computed."""

    def same_document_causal(batch, head, query, key):
        return (documents[batch, query] == documents[batch, key]) & (query >= key)

    time = documents.shape[1]
    return create_block_mask(same_document_causal, documents.shape[0], None, time, time, device=documents.device)


@functools.cache
def _compiled_flex_attention():
    # Created on first use: compiling costs seconds, and eager FlexAttention is a slow reference loop.
    return torch.compile(flex_attention, dynamic=False)


def _flex_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask: BlockMask) -> torch.Tensor:
    """FlexAttention, always compiled: inside a compiled model it is traced as is; in an eager
    one it goes through one module-wide compiled function."""
    attend = flex_attention if torch.compiler.is_compiling() else _compiled_flex_attention()
    return attend(q, k, v, block_mask=block_mask)


def flops_per_token(config: GPTConfig, num_parameters: int) -> float:
    """Training FLOPs per token: 6 per weight (forward + backward) plus attention scores
    (PaLM, appendix B). Position embeddings are a lookup, not a matmul."""
    weights = num_parameters - config.block_size * config.n_embd
    return 6 * weights + 12 * config.n_layer * config.n_embd * config.block_size


# --------------------------------------------------------------------------- Hugging Face format

# Hugging Face's GPT-2 stores these projections as Conv1D, i.e. transposed nn.Linear weights.
_TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_VOCAB_ROWS = ("wte.weight", "lm_head.weight")  # padded here, exactly vocab_size rows in Hugging Face


def hf_parameter_name(name: str) -> str:
    """The Hugging Face GPT-2 name of a lean-model parameter."""
    return name if name.startswith("lm_head") else f"transformer.{name}"


def hf_config(config: GPTConfig, eos_token_id: int, pad_token_id: int):
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.block_size,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        activation_function="gelu_new",
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        layer_norm_epsilon=1e-5,
        tie_word_embeddings=True,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )


def to_hf(model: GPT, eos_token_id: int, pad_token_id: int):
    """A `GPT2LMHeadModel` with this model's weights (float32, on the CPU)."""
    from transformers import AutoModelForCausalLM

    hf_model = AutoModelForCausalLM.from_config(
        hf_config(model.config, eos_token_id, pad_token_id), attn_implementation="sdpa"
    )
    state = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu", torch.float32)
        if name in _VOCAB_ROWS:
            tensor = tensor[: model.config.vocab_size]
        state[hf_parameter_name(name)] = tensor.t().contiguous() if name.endswith(_TRANSPOSED) else tensor.clone()
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    if unexpected or [key for key in missing if key != "lm_head.weight"]:
        raise RuntimeError(f"GPT-2 export mismatch: missing {missing}, unexpected {unexpected}")
    hf_model.tie_weights()
    return hf_model


def quiet_model_loading() -> None:
    """Transformers' bars for every load and save ("Loading weights", "Writing model shards")
    and PEFT's use of a deprecated transformers alias print each time a model is read or
    written: noise in stage logs and the command line that no user can act on. Errors and
    every other warning still print."""
    import warnings

    from transformers.utils import logging

    logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


MODEL_TYPE = "gpt2"  # what `to_hf` exports, and so what every model directory must hold
WEIGHT_FILES = ("config.json", "model.safetensors")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def load_hf(directory: str | Path, tokenizer: bool = True):
    """A Hugging Face GPT-2 directory, checked before any of it is used: (the model in fp32 on
    the CPU, its tokenizer, or None without `tokenizer`). Every problem a user can meet (no such
    directory, missing files, another model type, weights that config.json does not describe,
    unreadable or truncated files, a tokenizer with more tokens than the embeddings) is a
    MiniGPTError naming the directory. Weights are read from safetensors only and no code from
    the directory is run."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    quiet_model_loading()
    directory = Path(directory)
    if not directory.is_dir():
        raise MiniGPTError(f"model directory {directory} not found: run 'dvc repro train' (or 'dvc pull') first")
    required = WEIGHT_FILES + (TOKENIZER_FILES if tokenizer else ())
    missing = [name for name in required if not (directory / name).is_file()]
    if missing:
        raise MiniGPTError(f"model directory {directory} is incomplete: missing {', '.join(missing)}")
    try:
        config = AutoConfig.from_pretrained(directory, trust_remote_code=False)
        if config.model_type != MODEL_TYPE:
            raise MiniGPTError(
                f"model directory {directory} holds a {config.model_type!r} model (config.json), not the "
                f"{MODEL_TYPE!r} model this project trains"
            )
        loaded_tokenizer = AutoTokenizer.from_pretrained(directory) if tokenizer else None
        with _quiet_transformers():  # its load report would precede our own error
            model, loading = AutoModelForCausalLM.from_pretrained(
                directory,
                config=config,
                dtype=torch.float32,
                use_safetensors=True,
                trust_remote_code=False,
                output_loading_info=True,
                ignore_mismatched_sizes=True,  # listed in `loading`, for the error below to name
            )
    except MiniGPTError:
        raise
    except Exception as error:  # malformed config, corrupt or truncated weights, unknown architecture
        raise MiniGPTError(f"model directory {directory} cannot be loaded: {type(error).__name__}: {error}") from None
    _check_weights_match(directory, loading)
    tokens = len(loaded_tokenizer) if loaded_tokenizer is not None else _saved_vocabulary(directory)
    if tokens is not None and tokens > config.vocab_size:
        raise MiniGPTError(
            f"model directory {directory}: its tokenizer has {tokens:,} tokens but the model's embeddings hold "
            f"{config.vocab_size:,}: the tokenizer belongs to another model. Rebuild it with 'dvc repro' "
            "(or 'dvc pull')"
        )
    return model, loaded_tokenizer


def _saved_vocabulary(directory: Path) -> int | None:
    """The size of the tokenizer saved beside a model, without loading transformers' tokenizer."""
    path = directory / "tokenizer.json"
    if not path.is_file():
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path)).get_vocab_size(with_added_tokens=True)


def _check_weights_match(directory: Path, loading: dict) -> None:
    """Transformers fills weights that config.json expects but the file lacks with random values,
    and drops the file's extra ones: either way the answers would be noise."""
    found = {
        "missing": loading["missing_keys"],
        "unexpected": loading["unexpected_keys"],
        "of another shape": [entry[0] if isinstance(entry, tuple) else entry for entry in loading["mismatched_keys"]],
    }
    problems = [
        f"{len(names)} weight{'s' if len(names) > 1 else ''} {kind}: {', '.join(sorted(names)[:3])}"
        + (", …" if len(names) > 3 else "")
        for kind, names in found.items()
        if names
    ]
    if problems:
        raise MiniGPTError(
            f"model directory {directory}: config.json does not describe model.safetensors "
            f"({'; '.join(problems)}). Rebuild it with 'dvc repro train' (or 'dvc pull')"
        )


@contextmanager
def _quiet_transformers():
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)


def from_hf(directory: str | Path) -> GPT:
    """Load a Hugging Face GPT-2 directory (as written by `save_hf`) into the lean module,
    checked as `load_hf` checks it."""
    hf_model, _ = load_hf(directory, tokenizer=False)
    cfg = hf_model.config
    model = GPT(
        GPTConfig(
            vocab_size=cfg.vocab_size,
            block_size=cfg.n_positions,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            n_embd=cfg.n_embd,
            dropout=cfg.resid_pdrop,
        )
    )
    hf_state = hf_model.state_dict()
    state = model.state_dict()
    for name in state:
        tensor = hf_state[hf_parameter_name(name)]
        if name in _VOCAB_ROWS:  # the padding rows are never used: zeros, so a load is always the same weights
            state[name][: len(tensor)] = tensor
            state[name][len(tensor) :] = 0
        else:
            state[name] = tensor.t().contiguous() if name.endswith(_TRANSPOSED) else tensor
    model.load_state_dict(state)
    return model


def build_config(n_layer: int, n_head: int, n_embd: int, block_size: int, dropout: float, tokenizer) -> GPTConfig:
    """The model shape from params, sized to the tokenizer; the context must fit the tokenizer's limit."""
    if block_size > tokenizer.model_max_length:
        raise MiniGPTError(
            f"model.block_size ({block_size}) is above the tokenizer's limit "
            f"(tokenizer.model_max_length = {tokenizer.model_max_length})"
        )
    return GPTConfig(
        vocab_size=len(tokenizer), block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd, dropout=dropout
    )


def save_hf(model: GPT, directory: str | Path, tokenizer, card: str | None = None) -> None:
    """Write a complete Hugging Face model directory (weights, config, generation config,
    tokenizer with its chat template, and `card` as README.md), atomically."""
    from transformers import GenerationConfig

    from minigpt.decoding import saved_generation_config
    from minigpt.files import atomic_directory

    quiet_model_loading()
    hf_model = to_hf(model, tokenizer.eos_token_id, tokenizer.pad_token_id)
    hf_model.generation_config = GenerationConfig(
        **saved_generation_config(tokenizer.eos_token_id, tokenizer.pad_token_id)
    )
    with atomic_directory(directory) as tmp:
        hf_model.save_pretrained(tmp)
        save_tokenizer(tokenizer, tmp, model_max_length=model.config.block_size)  # this model's context
        if card is not None:
            (tmp / "README.md").write_text(card, encoding="utf-8")


# Loading options that transformers writes back into tokenizer_config.json: how a tokenizer was
# read (offline or not, from a folder or the hub), not what it is. Left in, the same tokenizer
# saved with and without HF_HUB_OFFLINE would differ, and so would every dvc.lock hash holding it.
TOKENIZER_LOAD_OPTIONS = ("is_local", "local_files_only")


def save_tokenizer(tokenizer, directory: Path, **attributes) -> None:
    """`tokenizer.save_pretrained(directory)` without its loading options, on a copy with
    `attributes` set (e.g. model_max_length)."""
    saved = copy.deepcopy(tokenizer)
    for option in TOKENIZER_LOAD_OPTIONS:
        saved.init_kwargs.pop(option, None)
    for name, value in attributes.items():
        setattr(saved, name, value)
    saved.save_pretrained(directory)


def init_model(config: GPTConfig, seed: int) -> GPT:
    """A freshly initialised model; the same seed always gives the same weights."""
    torch.manual_seed(seed)
    return GPT(config)
