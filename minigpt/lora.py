"""LoRA specialisation with PEFT: adapters injected into the lean model and trained by the
one training loop, then saved in PEFT format for the exported Hugging Face GPT-2, so that
`PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)` loads them.

The lean model uses nn.Linear where Hugging Face's GPT-2 uses Conv1D (transposed weights);
LoRA's A and B matrices have the same shapes for both, so the adapter converts by renaming
its keys and declaring `fan_in_fan_out` for the Conv1D side.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from minigpt.config import LoraParams
from minigpt.errors import MiniGPTError
from minigpt.files import atomic_directory
from minigpt.model import GPT, hf_parameter_name, save_tokenizer

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CATEGORIES = "categories.json"  # what an adapter was trained on, beside PEFT's files


def lora_config(params: LoraParams, for_hf: bool, base_dir: str | Path | None = None):
    from peft import LoraConfig

    return LoraConfig(
        r=params.rank,
        lora_alpha=params.alpha,
        lora_dropout=params.dropout,
        target_modules=list(params.target_modules),
        bias="none",
        fan_in_fan_out=for_hf,
        task_type="CAUSAL_LM" if for_hf else None,
        base_model_name_or_path=str(base_dir) if base_dir else None,
    )


def add_adapters(model: GPT, params: LoraParams, seed: int) -> GPT:
    """Inject LoRA layers (base weights frozen, 4-bit with `qlora`); the same seed gives the same adapters."""
    from peft import inject_adapter_in_model

    if params.qlora:
        model = quantize_4bit(model, params.target_modules)
    torch.manual_seed(seed)
    try:
        return inject_adapter_in_model(lora_config(params, for_hf=False), model)
    except ValueError as error:  # PEFT's "not found" and "not supported" errors
        raise MiniGPTError(f"lora.target_modules {params.target_modules}: {error}") from None


def category_rows(rows: list[dict], categories: list[str], split: str, every_category: bool) -> list[dict]:
    """The rows of the adapter's categories; a category with no rows is an error when
    `every_category` (a misspelt name would otherwise be ignored silently)."""
    found = {row["category"] for row in rows}
    missing = (
        [name for name in categories if name not in found]
        if every_category
        else ([] if found & set(categories) else categories)
    )
    if missing:
        raise MiniGPTError(
            f"no {split} example is in lora.categories {missing} (the data has: {', '.join(sorted(found))})"
        )
    return [row for row in rows if row["category"] in categories]


def quantize_4bit(model: GPT, target_modules: list[str]) -> GPT:
    """QLoRA's base: the targeted linear layers as NF4 bitsandbytes layers on the GPU."""
    try:
        import bitsandbytes
    except ImportError:
        bitsandbytes = None
    if bitsandbytes is None or not torch.cuda.is_available():
        raise MiniGPTError(
            "lora.qlora needs a CUDA GPU and bitsandbytes (pip install bitsandbytes). It is not "
            "worth it for a 110M model: its weights take 0.4 GB in fp32. Set lora.qlora: false"
        )
    for name, module in list(model.named_modules()):
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in target_modules:
            quantized = bitsandbytes.nn.Linear4bit(
                module.in_features,
                module.out_features,
                bias=module.bias is not None,
                compute_dtype=torch.bfloat16,
                quant_type="nf4",
            )
            quantized.weight = bitsandbytes.nn.Params4bit(module.weight.data, requires_grad=False, quant_type="nf4")
            if module.bias is not None:
                quantized.bias = torch.nn.Parameter(module.bias.data, requires_grad=False)
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, quantized)
    return model.cuda()  # moving Params4bit to the GPU quantizes them


def parameter_counts(model: GPT) -> tuple[int, int]:
    """(trainable, total) parameters, the adapters included (and the vocabulary's padding not)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad), model.num_parameters()


def save_adapter(model: GPT, directory: str | Path, params: LoraParams, base_dir: str | Path, tokenizer) -> None:
    """The adapter in PEFT format for the Hugging Face base model, with the tokenizer, atomically."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    state = {
        f"base_model.model.{hf_parameter_name(name)}": tensor.detach().cpu().contiguous()
        for name, tensor in get_peft_model_state_dict(model).items()
    }
    with atomic_directory(directory) as tmp:
        save_file(state, tmp / ADAPTER_WEIGHTS)
        save_adapter_config(params, base_dir, tmp)
        save_tokenizer(tokenizer, tmp)
        categories = {"categories": params.categories}
        (tmp / ADAPTER_CATEGORIES).write_text(json.dumps(categories, ensure_ascii=False) + "\n", encoding="utf-8")


def save_adapter_config(params: LoraParams, base_dir: str | Path, directory: Path) -> None:
    """PEFT's adapter_config.json, the same bytes for the same params in every process."""
    lora_config(params, for_hf=True, base_dir=base_dir).save_pretrained(directory)
    # PEFT holds target_modules as a set and writes it in hash order, which changes from one
    # process to the next: sorted, the file (which dvc.lock hashes) no longer moves.
    path = directory / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")


def adapter_categories(directory: str | Path) -> list[str]:
    """The categories the adapter in `directory` specialises in; [] for one made elsewhere."""
    path = Path(directory) / ADAPTER_CATEGORIES
    return json.loads(path.read_text(encoding="utf-8"))["categories"] if path.is_file() else []


def has_adapter(directory: str | Path) -> bool:
    """Whether `directory` holds a complete adapter: its weights and its PEFT config."""
    return (Path(directory) / ADAPTER_WEIGHTS).is_file() and (Path(directory) / "adapter_config.json").is_file()


def load_with_adapter(base_model, adapter_dir: str | Path):
    """The Hugging Face base model with the adapter applied (not merged), in eval mode. A damaged
    adapter (unreadable config, cut weights) and one made for another base fail with what is wrong."""
    from peft import PeftModel
    from safetensors import SafetensorError

    def damaged(what: str) -> MiniGPTError:
        return MiniGPTError(f"the adapter in {adapter_dir} is damaged: {what}; rebuild it with 'dvc repro lora'")

    try:
        config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise damaged(f"adapter_config.json is not JSON ({error})") from None
    if not isinstance(config, dict):
        raise damaged("adapter_config.json is not a JSON object")
    try:
        return PeftModel.from_pretrained(base_model, str(adapter_dir)).eval()
    except SafetensorError as error:
        raise damaged(f"{ADAPTER_WEIGHTS} cannot be read ({error})") from None
    except (RuntimeError, ValueError, KeyError, TypeError) as error:  # e.g. an adapter made for another base shape
        raise MiniGPTError(f"the adapter in {adapter_dir} does not fit this base model: {error}") from None


def save_merged(base_model, adapter_dir: str | Path, directory: str | Path, tokenizer) -> None:
    """base + adapter folded into plain weights: a model `AutoModelForCausalLM` loads alone."""
    merged = load_with_adapter(base_model, adapter_dir).merge_and_unload()
    with atomic_directory(directory) as tmp:
        merged.save_pretrained(tmp)
        save_tokenizer(tokenizer, tmp)
