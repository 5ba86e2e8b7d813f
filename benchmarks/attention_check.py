"""The FlexAttention path against SDPA on document-masked packed rows: same weights, same rows.

    python benchmarks/attention_check.py                          # CPU: logits only
    python benchmarks/attention_check.py --device cuda --out attention.json

A small GPT (`SHAPE`) reads random packed rows, several documents a row and trailing padding
(document 0), once with `use_attention("sdpa")` (the reference) and once with `"flex"`. It
reports the largest absolute difference of the logits and, where FlexAttention has a backward
pass (CUDA), the largest difference of any parameter's gradient of the summed loss relative to
that gradient's largest entry, each against a threshold, and `ok` when all are within. On
CUDA it compares in fp32 and under bf16 autocast, as training runs; on the CPU in fp32 only.
It imports only torch and minigpt.model, so it runs on a bare GPU image.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minigpt.model import GPT, IGNORE_INDEX, GPTConfig  # noqa: E402

SHAPE = GPTConfig(vocab_size=512, block_size=256, n_layer=2, n_head=4, n_embd=128)
ROWS = 4
# Largest differences accepted (logits: absolute; gradients: relative to each gradient's largest
# entry). fp32: the two kernels only sum in other orders; bf16 keeps 8 bits of mantissa, and the
# two paths round their activations at different points.
THRESHOLDS = {"fp32": {"logits": 1e-4, "gradients": 1e-4}, "bf16": {"logits": 5e-2, "gradients": 5e-2}}


def packed_rows(config: GPTConfig, rows: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Model arguments for rows of 3–8 documents of random lengths, then 1–40 tokens of padding
    (document 0), with targets inside documents only, as `minigpt.packing` lays them out."""
    generator = torch.Generator().manual_seed(seed)
    time = config.block_size
    documents = torch.zeros(rows, time, dtype=torch.int16)
    for row in range(rows):
        used = time - int(torch.randint(1, 41, (), generator=generator))
        count = int(torch.randint(3, 9, (), generator=generator))
        cuts = torch.randperm(used - 1, generator=generator)[: count - 1].add(1).sort().values.tolist()
        for number, (start, stop) in enumerate(zip([0, *cuts], [*cuts, used]), start=1):
            documents[row, start:stop] = number
    idx = torch.randint(0, config.vocab_size, (rows, time), generator=generator)
    following = torch.cat([documents[:, 1:], torch.zeros(rows, 1, dtype=documents.dtype)], dim=1)
    targets = torch.where((following == documents) & (documents > 0), idx.roll(-1, dims=1), IGNORE_INDEX)
    return {"idx": idx, "targets": targets, "documents": documents}


def run(model: GPT, kind: str, batch: dict[str, torch.Tensor], autocast: bool, backward: bool):
    """(logits, {parameter name: gradient of the summed loss} or None) with attention `kind`."""
    model.use_attention(kind).zero_grad(set_to_none=True)
    device = batch["idx"].device
    autocasting = torch.autocast(device.type, dtype=torch.bfloat16) if autocast else nullcontext()
    # Without grad when no backward follows: on the CPU FlexAttention refuses inputs that need one.
    with autocasting, torch.set_grad_enabled(backward):
        logits, _ = model(batch["idx"], documents=batch["documents"])
        if not backward:
            return logits.float().detach(), None
        _, loss = model(**batch, loss_reduction="sum")
    loss.backward()
    return logits.float().detach(), {name: p.grad.float().clone() for name, p in model.named_parameters()}


@contextmanager
def full_fp32_matmuls():
    """No TF32 inside: training turns it on process-wide, and its 10-bit products would swamp
    the fp32 comparison (FlexAttention's kernels follow the same switch)."""
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def compare_attention(device: str) -> dict:
    """Per precision, how far flex lands from sdpa (logits; gradients where `gradients_compared`),
    the thresholds, and `ok`: all within them."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = GPT(SHAPE).to(device).train()  # dropout 0: training mode is the path that trains
    batch = {name: tensor.to(device) for name, tensor in packed_rows(SHAPE, ROWS).items()}
    precisions = ["fp32", "bf16"] if cuda else ["fp32"]
    result = {
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "gradients_compared": cuda,
        "thresholds": {},
    }
    ok = True
    for precision in precisions:
        autocast = precision == "bf16"
        with full_fp32_matmuls():
            reference, reference_grads = run(model, "sdpa", batch, autocast, backward=cuda)
            flex, flex_grads = run(model, "flex", batch, autocast, backward=cuda)
        differences = {"logits": (flex - reference).abs().max().item()}
        if cuda:
            gradients = {
                name: ((flex_grads[name] - grad).abs().max() / grad.abs().max()).item()
                for name, grad in reference_grads.items()
            }
            differences["gradients"] = max(gradients.values())
            differences["worst_gradient"] = max(gradients, key=gradients.get)
        thresholds = {key: THRESHOLDS[precision][key] for key in differences if key in THRESHOLDS[precision]}
        ok &= all(differences[key] <= limit for key, limit in thresholds.items())
        result[precision] = differences
        result["thresholds"][precision] = thresholds
    return {**result, "ok": ok}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args()
    result = compare_attention(args.device)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
