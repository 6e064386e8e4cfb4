"""Size-from-config and VRAM arithmetic against real published numbers and real safetensors files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from app.catalog.architecture import architecture_from_config
from app.catalog.model_card import parse_model_card
from app.catalog.sizing import gptq_checkpoint_bytes
from app.catalog.vram import GIB, CacheType, kv_cache_bytes
from tests.fixtures import RepoSpec

CARDS = Path(__file__).resolve().parent / "fixtures" / "model-cards"

# meta-llama/Llama-2-70b-hf config.json (the fields that shape the model).
LLAMA_2_70B_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 8192,
    "intermediate_size": 28672,
    "num_attention_heads": 64,
    "num_hidden_layers": 80,
    "num_key_value_heads": 8,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
}


def _llama_70b_card_rows() -> list[tuple[str, int, int | None, int]]:
    card = parse_model_card((CARDS / "Llama-2-70B-GPTQ.README.md").read_text(encoding="utf-8"))
    rows = [(r.branch, r.bits, r.group_size, r.size_bytes) for r in card.rows]
    assert len(rows) == 8
    return [(b, bits, gs, size) for b, bits, gs, size in rows if bits and size]


def test_size_from_config_reproduces_every_llama_2_70b_card_size() -> None:
    arch = architecture_from_config(LLAMA_2_70B_CONFIG)
    assert arch is not None
    rows = _llama_70b_card_rows()
    assert {round(size / 1e9, 2) for *_, size in rows} >= {35.33, 40.66, 37.99, 36.65, 28.03, 26.78}
    for branch, bits, group_size, card_bytes in rows:
        computed = gptq_checkpoint_bytes(arch, bits, group_size)
        assert abs(computed - card_bytes) / card_bytes < 0.001, (branch, computed, card_bytes)


def _safetensors_tensor_bytes(path: Path) -> int:
    with path.open("rb") as handle:
        (header_len,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_len))
    return max(end for key, t in header.items() if key != "__metadata__" for _, end in [t["data_offsets"]])


def test_size_from_config_equals_the_tensor_bytes_of_real_fixture_checkpoints(
    fixture_specs: tuple[Path, dict[str, RepoSpec]],
) -> None:
    root, specs = fixture_specs
    checked = 0
    for repo_id, spec in specs.items():
        for branch in spec.branches:
            if branch.bits is None:
                continue
            branch_dir = root / repo_id / branch.name
            config = json.loads((branch_dir / "config.json").read_text())
            arch = architecture_from_config(config)
            assert arch is not None
            expected = _safetensors_tensor_bytes(branch_dir / branch.weight_file)
            assert gptq_checkpoint_bytes(arch, branch.bits, branch.group_size) == expected, (
                repo_id,
                branch.name,
            )
            checked += 1
    assert checked >= 10


def test_kv_cache_is_gqa_aware_and_matches_the_published_figure() -> None:
    arch = architecture_from_config(LLAMA_2_70B_CONFIG)
    assert arch is not None
    # 8 KV heads, not 64: 1.25 GiB at 4096 tokens in fp16.
    assert kv_cache_bytes(arch, 4096, CacheType.FP16) == int(1.25 * GIB)
    assert kv_cache_bytes(arch, 8192, CacheType.FP16) == int(2.5 * GIB)
    assert kv_cache_bytes(arch, 4096, CacheType.FP8) == int(0.625 * GIB)


@pytest.mark.parametrize(("cache", "bits"), [(CacheType.Q8, 8.5), (CacheType.Q6, 6.5), (CacheType.Q4, 4.5)])
def test_quantized_caches_add_one_fp16_layer_of_scratch(cache: CacheType, bits: float) -> None:
    arch = architecture_from_config(LLAMA_2_70B_CONFIG)
    assert arch is not None
    one_layer_fp16 = 2 * 8 * 128 * 4096 * 2
    stored = 2 * 80 * 8 * 128 * 4096 * bits / 8
    assert kv_cache_bytes(arch, 4096, cache) == int(stored + one_layer_fp16)
    assert kv_cache_bytes(arch, 4096, cache) < kv_cache_bytes(arch, 4096, CacheType.FP16)


def test_falcon_multi_query_config_has_one_kv_head() -> None:
    arch = architecture_from_config(
        {
            "model_type": "falcon",
            "hidden_size": 4544,
            "n_head": 71,
            "n_layer": 32,
            "vocab_size": 65024,
            "multi_query": True,
            "new_decoder_architecture": False,
        }
    )
    assert arch is not None
    assert (arch.kv_heads, arch.head_dim, arch.intermediate, arch.max_context) == (1, 64, 4 * 4544, 2048)


def test_config_without_shape_gives_no_architecture() -> None:
    assert architecture_from_config({"model_type": "llama"}) is None
