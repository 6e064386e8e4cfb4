"""Memory estimates: the measurements table, the estimate's parts, and the calibration targets."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest

from app.backends.exllamav2 import ExLlamaV2Rules
from app.backends.gptqmodel import GPTQModelRules
from app.catalog.architecture import architecture_from_config
from app.catalog.branch import BranchInfo
from app.catalog.estimate import STACKS, default_prompt, estimate_memory
from app.catalog.measurements import MEASURES, MeasurementsError, load_measurements, parse_measurements
from app.catalog.quantization import QuantizationParams
from app.catalog.sizing import gptq_checkpoint_bytes
from app.catalog.vram import CacheType, kv_cache_bytes
from app.units import MIB
from benchmarks.estimates import MAX_LOW, WORST_ABS, error

QWEN3_17B = architecture_from_config(
    {
        "model_type": "qwen3",
        "num_hidden_layers": 28,
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    }
)
LLAMA_7B = architecture_from_config(
    {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "num_hidden_layers": 32,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_attention_heads": 32,
        "vocab_size": 32000,
        "max_position_embeddings": 4096,
    }
)


def _doc() -> dict[str, Any]:
    text = resources.files("app.catalog").joinpath("data/measurements.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def test_the_table_holds_the_issues_figures_with_their_sources() -> None:
    rows = load_measurements()
    by_label = {r.label: r for r in rows}
    assert by_label["Llama 7B 4-bit 128g"].measured_bytes == 5194 * MIB
    assert by_label["Llama 13B 4-bit 128g"].measured_bytes == 9127 * MIB
    qwen3 = [r for r in rows if r.model == "qwen3-0.6b"]
    assert [(r.prompt, r.measured_bytes // MIB) for r in qwen3] == [
        (1, 986),
        (6144, 1658),
        (14336, 2554),
        (30720, 4347),
    ]
    assert all(r.context == r.prompt + 2048 for r in qwen3)  # 2048 new tokens after the input
    optimum = by_label["Llama-2-13B-chat-GPTQ, 512 + 512 tokens"]
    assert optimum.measured_bytes == 10_484_340_000 and optimum.source.measure == "nvidia_smi"
    assert optimum.source.includes_cuda_context and optimum.source.includes_allocator_reserve
    qwen25 = [r for r in rows if r.model == "qwen2.5-7b"]
    assert [round(r.measured_bytes / 1024**3, 2) for r in qwen25] == [5.52, 6.52, 8.05, 11.11]
    for row in rows:
        assert row.source.url.startswith("https://") and row.config_url.startswith("https://huggingface.co/")
        assert row.source.measure in MEASURES and row.source.hardware and row.source.protocol
        assert row.stack is STACKS[row.source.stack]
        assert 0 < row.prompt <= row.context


def test_a_malformed_row_is_reported_by_number() -> None:
    doc = copy.deepcopy(_doc())
    doc["rows"][2]["unit"] = "furlongs"
    with pytest.raises(MeasurementsError, match="row 3"):
        parse_measurements(doc)
    doc = copy.deepcopy(_doc())
    doc["sources"]["qwen3-speed"]["stack"] = "no-such-stack"
    with pytest.raises(MeasurementsError, match="no-such-stack"):
        parse_measurements(doc)


def test_every_counted_row_meets_the_targets() -> None:
    """What benchmarks/estimates.py prints PASS for: worst within ±5 %, never more than 5 % too low."""
    counted = [r for r in load_measurements() if not r.excluded]
    assert len(counted) >= 30
    for row in counted:
        assert abs(error(row)) <= WORST_ABS and error(row) >= MAX_LOW, row.label


def test_excluded_rows_say_why() -> None:
    excluded = [r for r in load_measurements() if r.excluded]
    assert excluded and all("70B" in r.label and "swapped" in r.excluded for r in excluded)


def test_kv_cache_grows_with_the_context_and_the_prefill_with_the_prompt() -> None:
    assert LLAMA_7B is not None
    stack = STACKS["exllamav2"]
    weights = gptq_checkpoint_bytes(LLAMA_7B, 4, 128)
    short = estimate_memory(LLAMA_7B, weights, 4, stack, 4096, 256)
    long_prompt = estimate_memory(LLAMA_7B, weights, 4, stack, 4096, 2048)
    long_context = estimate_memory(LLAMA_7B, weights, 4, stack, 8192, 256)
    assert long_prompt.kv_cache == short.kv_cache and long_prompt.prefill > short.prefill
    assert long_context.kv_cache == 2 * short.kv_cache and long_context.prefill == short.prefill
    assert long_context.buffers == short.buffers == long_prompt.buffers  # fixed per backend
    # ExLlama processes at most max_input_len tokens at once: a longer prompt costs no more.
    assert (
        estimate_memory(LLAMA_7B, weights, 4, stack, 8192, 8192).prefill
        == estimate_memory(LLAMA_7B, weights, 4, stack, 8192, 2048).prefill
    )
    # The embedding table stays on the CPU with ExLlama.
    assert short.weights == weights - LLAMA_7B.embedding_bytes


def test_a_growing_cache_hides_the_prefill_in_the_room_of_the_reply() -> None:
    """Qwen3 benchmark: after 30,720 input tokens and 2,048 generated, growth is the KV cache alone."""
    assert QWEN3_17B is not None
    stack = STACKS["gptqmodel-2.2"]
    weights = gptq_checkpoint_bytes(QWEN3_17B, 8, 128)
    with_reply = estimate_memory(QWEN3_17B, weights, 8, stack, 32768, 30720)
    prompt_fills_context = estimate_memory(QWEN3_17B, weights, 8, stack, 30720, 30720)
    assert with_reply.prefill < 32 * MIB
    assert prompt_fills_context.prefill > with_reply.prefill
    assert with_reply.kv_cache == kv_cache_bytes(QWEN3_17B, 32768)


def _branch(bits: int = 4) -> BranchInfo:
    assert LLAMA_7B is not None
    return BranchInfo(
        repo_id="org/Llama-7B-GPTQ",
        branch="main",
        commit="c" * 40,
        is_gptq=True,
        quantization=QuantizationParams(bits=bits, group_size=128, act_order=False),
        architecture=LLAMA_7B,
    )


def test_exllamas_chunk_setting_bounds_the_prefill_and_sizes_its_scratch() -> None:
    branch = _branch()
    default = ExLlamaV2Rules().memory_estimate(branch, 8192, CacheType.FP16, 4096)
    small = ExLlamaV2Rules(prefill_chunk=512).memory_estimate(branch, 8192, CacheType.FP16, 4096)
    assert default is not None and small is not None
    assert small.prefill < default.prefill and small.buffers < default.buffers
    assert small.kv_cache == default.kv_cache and small.weights == default.weights


def test_backends_estimate_for_a_chosen_prompt_with_a_default_share_of_the_context() -> None:
    branch = _branch()
    for rules in (ExLlamaV2Rules(), GPTQModelRules()):
        default = rules.memory_estimate(branch, 8192, CacheType.FP16)
        explicit = rules.memory_estimate(branch, 8192, CacheType.FP16, default_prompt(8192))
        assert default == explicit and default is not None
        assert default.cuda_context > 0 and default.total > default.allocated
    assert default_prompt(8192) == 2048 and default_prompt(1024) == 512 and default_prompt(300) == 300
