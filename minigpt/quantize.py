"""Smaller weights for answering on a CPU.

Decoding one token at batch 1 reads every weight once, so on a CPU memory bandwidth, not
arithmetic, sets the pace: fewer bytes per weight are faster tokens. Formats (`--weights`):

- `fp32`: the weights as trained (the default).
- `bf16`: every weight and activation in bfloat16, half the bytes; the format for GPUs. On a
  CPU it needs native bf16 (AVX512-BF16 or AMX) not to be emulated, and even there HF
  `generate` at batch 1 decodes no faster than fp32 in the torch we pin.
- `int8`: PyTorch's dynamic quantization (`torch.ao`) of every projection and the head: int8
  weights with one scale per output channel, activations quantized per batch on the fly;
  embeddings and LayerNorms stay fp32. GPT-2's projections are Hugging Face `Conv1D`
  modules, which quantization does not know, so they become the equivalent `nn.Linear` first.
  CPU only.

Scores and answers move a little: `benchmarks/RESULTS.md` measures by how much (answer
perplexity and identical greedy answers against fp32).
"""

from __future__ import annotations

import sys
import warnings

import torch
from torch import nn

from minigpt.config import WEIGHT_FORMATS
from minigpt.errors import MiniGPTError

# Below this many parameters a model is not memory-bound on a CPU, and int8 only adds work:
# 0.79× fp32's tokens/s at 1.35M parameters, 2.27× at 110M (benchmarks/RESULTS.md; in between
# is not measured, so the line is drawn well below the size where it pays).
INT8_PAYS_FROM = 10_000_000


def conv1d_to_linear(model: nn.Module) -> nn.Module:
    """Replace every Hugging Face Conv1D (x @ W + b, W stored [in, out]) with the equivalent
    nn.Linear (W stored [out, in]), in place."""
    from transformers.pytorch_utils import Conv1D

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                linear = nn.Linear(child.weight.shape[0], child.weight.shape[1], device=child.weight.device)
                with torch.no_grad():
                    linear.weight.copy_(child.weight.t())
                    linear.bias.copy_(child.bias)
                setattr(parent, name, linear)
    return model


def compress(model: nn.Module, weights: str) -> nn.Module:
    """`model` (a Hugging Face causal LM in fp32, eval mode) in the weight format `weights`.
    A PEFT model is merged into plain weights first."""
    if weights not in WEIGHT_FORMATS:
        raise MiniGPTError(f"unknown weight format {weights!r}: use one of {', '.join(WEIGHT_FORMATS)}")
    if weights == "fp32":
        return model
    if hasattr(model, "merge_and_unload"):  # a LoRA adapter on top: folded in, as the formats need plain layers
        model = model.merge_and_unload()
    if weights == "bf16":
        return model.to(torch.bfloat16)
    if next(model.parameters()).device.type != "cpu":
        raise MiniGPTError("int8 weights run on the CPU only: use --device cpu (or bf16 on a GPU)")
    parameters = sum(parameter.numel() for parameter in model.parameters())
    if parameters < INT8_PAYS_FROM:
        print(
            f"warning: int8 weights make a {parameters / 1e6:.2f}M-parameter model slower, not faster (it is not "
            "memory-bound: 0.79x fp32's tokens/s measured at 1.35M parameters, 2.27x at 110M), and change some "
            "greedy answers: fp32 is the better choice here",
            file=sys.stderr,
            flush=True,
        )
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch.ao announces its move to torchao; it works in the torch we pin
        warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, UserWarning))
        return quantize_dynamic(conv1d_to_linear(model), {nn.Linear: per_channel_dynamic_qconfig}, inplace=True)


def is_int8(model: nn.Module) -> bool:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    return any(isinstance(module, DynamicQuantizedLinear) for module in model.modules())
