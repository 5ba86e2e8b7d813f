"""The lean GPT: GPT-2's shape and parameter count, and a lossless Hugging Face round trip."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM

from benchmarks.attention_check import SHAPE, compare_attention, packed_rows
from minigpt.config import ModelParams
from minigpt.decoding import GREEDY
from minigpt.model import GPT, GPTConfig, flops_per_token, from_hf, save_hf, save_tokenizer, to_hf

TINY = GPTConfig(vocab_size=320, block_size=32, n_layer=2, n_head=4, n_embd=64)


def test_the_seed_shape_has_the_reference_parameter_count():
    seed = GPTConfig(vocab_size=32_000, block_size=512, n_layer=12, n_head=12, n_embd=768)
    with torch.device("meta"):  # shapes only: nothing is allocated
        model = GPT(seed)
    assert model.num_parameters() == 110_025_216
    assert model.lm_head.weight is model.wte.weight
    assert flops_per_token(seed, model.num_parameters()) == pytest.approx(6 * 109_632_000 + 12 * 12 * 768 * 512)


def test_the_vocabulary_is_padded_for_the_matmuls_but_never_seen():
    model = GPT(TINY)  # 320 tokens: 384 rows
    assert model.wte.weight.shape == (384, 64) and TINY.padded_vocab_size == 384
    assert model.num_parameters() == sum(p.numel() for p in model.parameters()) - 64 * 64
    logits, _ = model(torch.randint(0, TINY.vocab_size, (1, 5)))
    assert logits.shape == (1, 5, TINY.vocab_size)  # padded columns are cut before softmax and loss
    assert GPTConfig(vocab_size=32_000, block_size=8, n_layer=1, n_head=1, n_embd=8).padded_vocab_size == 32_000


def test_heads_must_divide_the_width():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(vocab_size=100, block_size=16, n_layer=1, n_head=5, n_embd=64)
    with pytest.raises(ValueError, match="n_embd .* must be divisible by n_head"):
        ModelParams(n_layer=1, n_head=5, n_embd=64, block_size=16, dropout=0.0)


def test_loss_ignores_masked_targets_and_sums_on_request():
    torch.manual_seed(0)
    model = GPT(TINY).eval()
    idx = torch.randint(0, TINY.vocab_size, (2, 8))
    targets = idx.roll(-1, dims=1)
    masked = targets.clone()
    masked[:, :4] = -100
    logits, _ = model(idx)
    no_logits, mean_loss = model(idx, masked)
    _, sum_loss = model(idx, masked, loss_reduction="sum")
    assert no_logits is None  # training never materialises them outside the graph
    expected = torch.nn.functional.cross_entropy(logits[:, 4:].reshape(-1, TINY.vocab_size), targets[:, 4:].reshape(-1))
    assert mean_loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert sum_loss.item() == pytest.approx(expected.item() * 8, rel=1e-5)


class FakeTokenizer:
    eos_token_id, pad_token_id = 0, 1
    init_kwargs: dict = {}

    def save_pretrained(self, directory):
        pass


def test_export_gives_the_same_logits_and_loads_with_auto_classes(tmp_path):
    torch.manual_seed(0)
    model = GPT(TINY).eval()
    idx = torch.randint(0, TINY.vocab_size, (3, 20))
    hf_model = to_hf(model, eos_token_id=0, pad_token_id=1).eval()
    assert type(hf_model).__name__ == "GPT2LMHeadModel"
    torch.testing.assert_close(hf_model(idx).logits, model(idx)[0], atol=1e-5, rtol=1e-5)

    save_hf(model, tmp_path / "model", FakeTokenizer())
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "model").eval()
    torch.testing.assert_close(loaded(idx).logits, model(idx)[0], atol=1e-5, rtol=1e-5)
    assert loaded.generation_config.eos_token_id == 0 and loaded.config.bos_token_id == 0
    saved = json.loads((tmp_path / "model" / "generation_config.json").read_text(encoding="utf-8"))
    assert "max_length" not in saved and saved["max_new_tokens"] == GREEDY.max_new_tokens  # no conflict with callers'
    back = from_hf(tmp_path / "model").eval()
    assert back.config == TINY
    torch.testing.assert_close(back(idx)[0], model(idx)[0], atol=1e-6, rtol=1e-6)


def test_a_saved_tokenizer_does_not_record_how_it_was_loaded(tiny_model_dir, tmp_path):
    """Offline or online, the same tokenizer saves the same bytes: dvc.lock hashes stay put."""
    from transformers import AutoTokenizer

    saved = {}
    for offline in (True, False):
        save_tokenizer(AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=offline), tmp_path / str(offline))
        saved[offline] = (tmp_path / str(offline) / "tokenizer_config.json").read_bytes()
    assert saved[True] == saved[False]
    assert not {"local_files_only", "is_local"} & set(json.loads(saved[True]))


def test_flex_attention_gives_sdpa_s_logits_on_packed_rows():
    """Several documents a row and trailing padding: the block mask means what the dense one does."""
    result = compare_attention("cpu")
    assert result["ok"] and result["fp32"]["logits"] > 0, result  # > 0: two kernels, not one path twice


@pytest.mark.slow  # torch.compile takes a while on a CPU
def test_a_compiled_model_traces_flex_attention_in_one_graph():
    torch.manual_seed(0)
    model = GPT(SHAPE).eval()
    batches = [packed_rows(SHAPE, rows=2, seed=seed) for seed in (0, 1)]  # other documents, same shapes
    with torch.no_grad():
        references = [model(batch["idx"], documents=batch["documents"])[0] for batch in batches]
        # fullgraph: the block mask and FlexAttention are traced, not left to eager code
        compiled = torch.compile(model.use_attention("flex"), dynamic=False, fullgraph=True)
        for batch, reference in zip(batches, references):
            logits, _ = compiled(batch["idx"], documents=batch["documents"])
            torch.testing.assert_close(logits, reference, atol=1e-5, rtol=1e-5)


def test_flex_attention_refuses_to_train_with_dropout():
    model = GPT(replace(TINY, dropout=0.1)).use_attention("flex").train()
    idx = torch.randint(0, TINY.vocab_size, (2, 16))
    with pytest.raises(ValueError, match="attention 'flex' needs dropout 0 .*: use sdpa"):
        model(idx, documents=torch.tensor([[1] * 10 + [2] * 6, [1] * 12 + [0] * 4]))
    model(idx)  # rows without documents take SDPA, dropout and all


def test_only_known_attention_paths_are_accepted():
    with pytest.raises(ValueError, match="unknown attention 'flash': use one of sdpa, flex"):
        GPT(TINY).use_attention("flash")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention's backward pass needs CUDA")
def test_flex_attention_gives_sdpa_s_logits_and_gradients_on_a_gpu():
    result = compare_attention("cuda")
    assert result["gradients_compared"] and result["ok"], result


def gradients(model: GPT) -> dict[str, torch.Tensor]:
    return {name: parameter.grad.clone() for name, parameter in model.named_parameters()}


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_the_chunked_loss_gives_the_whole_loss_and_its_gradients(monkeypatch, reduction):
    monkeypatch.setattr("minigpt.model.LOSS_CHUNK_TOKENS", 7)  # uneven chunks of 2 × 32 tokens
    torch.manual_seed(0)
    model = GPT(TINY)
    idx = torch.randint(0, TINY.vocab_size, (2, TINY.block_size))
    targets = idx.roll(-1, dims=1)
    targets[:, -5:] = -100
    losses, grads = [], []
    for chunked in (False, True):
        model.zero_grad()
        _, loss = model.use_speedups(chunked_loss=chunked)(idx, targets, loss_reduction=reduction)
        loss.backward()
        losses.append(loss.detach())
        grads.append(gradients(model))
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-6, atol=1e-5)
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-6)


def test_the_bf16_residual_stream_carries_the_autocast_dtype():
    torch.manual_seed(0)
    model = GPT(TINY)
    idx = torch.randint(0, TINY.vocab_size, (2, TINY.block_size))
    seen = []
    model.h[-1].register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    losses = []
    for bf16_residual in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            losses.append(model.use_speedups(bf16_residual=bf16_residual)(idx, idx)[1].float())
    assert seen == [torch.float32, torch.bfloat16]
    torch.testing.assert_close(losses[1], losses[0], rtol=2e-2, atol=0)  # bf16 rounding, not another model
    model.use_speedups(bf16_residual=True)(idx)  # outside autocast it is a no-op: fp32 stays fp32
    assert seen[-1] == torch.float32
