"""A model's shape, read from its config.json: what sizing, KV-cache and backend checks need."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# config.json spells the same fact differently per architecture; the first key present wins.
_KEY_ALIASES: dict[str, tuple[str, ...]] = {
    "layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "hidden": ("hidden_size", "n_embd", "d_model"),
    "heads": ("num_attention_heads", "n_head", "num_heads"),
    "kv_heads": ("num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num"),
    "intermediate": ("intermediate_size", "ffn_hidden_size", "n_inner"),
    "vocab": ("vocab_size", "padded_vocab_size"),
    "max_context": (
        "max_position_embeddings",
        "max_seq_len",
        "n_positions",
        "seq_length",
        "max_sequence_length",
    ),
}

# Falcon-7B and friends have no max_position_embeddings; 2048 is what they were trained with.
_DEFAULT_MAX_CONTEXT = 2048


@dataclass(frozen=True)
class Architecture:
    """The shape of a transformer decoder, enough to size weights and the KV cache."""

    model_type: str
    architectures: tuple[str, ...]
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    max_context: int
    tie_embeddings: bool = False

    @property
    def embedding_bytes(self) -> int:
        """fp16 bytes of the input embedding table (ExLlamaV2 keeps it on the CPU)."""
        return self.vocab * self.hidden * 2

    def linears(self) -> list[tuple[int, int]]:
        """The (in_features, out_features) of every quantized linear in one layer."""
        return _LINEAR_LAYOUTS.get(self.model_type, _llama_linears)(self)

    def norm_params(self) -> int:
        """fp16 parameters outside the linears and embeddings (norm weights and biases)."""
        per_layer, final = _NORM_LAYOUTS.get(self.model_type, (2, 1))
        return (per_layer * self.layers + final) * self.hidden

    def parameter_count(self) -> int:
        """Approximate number of parameters (for labels like "7B" and scratch-size scaling)."""
        linear = sum(i * o for i, o in self.linears()) * self.layers
        heads = 1 if self.tie_embeddings else 2
        return linear + heads * self.vocab * self.hidden + self.norm_params()


def _llama_linears(a: Architecture) -> list[tuple[int, int]]:
    q_out = a.heads * a.head_dim
    kv_out = a.kv_heads * a.head_dim
    return [
        (a.hidden, q_out),  # q_proj
        (a.hidden, kv_out),  # k_proj
        (a.hidden, kv_out),  # v_proj
        (q_out, a.hidden),  # o_proj
        (a.hidden, a.intermediate),  # gate_proj
        (a.hidden, a.intermediate),  # up_proj
        (a.intermediate, a.hidden),  # down_proj
    ]


def _falcon_linears(a: Architecture) -> list[tuple[int, int]]:
    return [
        (a.hidden, (a.heads + 2 * a.kv_heads) * a.head_dim),  # fused query_key_value
        (a.hidden, a.hidden),  # dense
        (a.hidden, a.intermediate),  # dense_h_to_4h
        (a.intermediate, a.hidden),  # dense_4h_to_h
    ]


def _gpt2_like_linears(a: Architecture) -> list[tuple[int, int]]:
    return [
        (a.hidden, 3 * a.hidden),
        (a.hidden, a.hidden),
        (a.hidden, a.intermediate),
        (a.intermediate, a.hidden),
    ]


# Families whose decoder layer is not Llama's q/k/v/o + gate/up/down. Everything else is sized as Llama.
_LINEAR_LAYOUTS: dict[str, Callable[[Architecture], list[tuple[int, int]]]] = {
    "falcon": _falcon_linears,
    "RefinedWeb": _falcon_linears,
    "RefinedWebModel": _falcon_linears,
    "gpt2": _gpt2_like_linears,
    "gpt_bigcode": _gpt2_like_linears,
}

# (norm vectors per layer, final norm vectors); LayerNorm has weight and bias, RMSNorm weight only.
_NORM_LAYOUTS: dict[str, tuple[int, int]] = {
    "falcon": (2, 2),
    "RefinedWeb": (2, 2),
    "RefinedWebModel": (2, 2),
    "gpt2": (4, 2),
    "gpt_bigcode": (4, 2),
}

# Architectures that size their MLP as 4 x hidden when config.json does not say.
_FOUR_X_MLP = {"falcon", "RefinedWeb", "RefinedWebModel", "gpt2", "gpt_bigcode"}


def _first(config: Mapping[str, Any], field: str) -> Any:
    sources = [config]
    # Multimodal and some newer configs nest the language model's shape under text_config.
    if isinstance(config.get("text_config"), Mapping):
        sources.insert(0, config["text_config"])
    for source in sources:
        for key in _KEY_ALIASES[field]:
            value = source.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def _kv_heads(config: Mapping[str, Any], heads: int) -> int:
    explicit = _first(config, "kv_heads")
    if explicit:
        return int(explicit)
    # Falcon-7B style multi-query attention: one shared K/V head.
    if config.get("multi_query") and not config.get("new_decoder_architecture"):
        return 1
    return heads


def architecture_from_config(config: Mapping[str, Any]) -> Architecture | None:
    """Build an Architecture from a parsed config.json; None when essential fields are missing."""
    layers, hidden, heads = (_first(config, f) for f in ("layers", "hidden", "heads"))
    vocab = _first(config, "vocab")
    if not (layers and hidden and heads and vocab):
        return None
    model_type = str(config.get("model_type") or "unknown")
    head_dim_value = config.get("head_dim")
    head_dim = head_dim_value if isinstance(head_dim_value, int) and head_dim_value > 0 else hidden // heads
    intermediate = _first(config, "intermediate")
    if not intermediate:
        intermediate = 4 * hidden if model_type in _FOUR_X_MLP else math.ceil(hidden * 8 / 3 / 256) * 256
    architectures = config.get("architectures")
    return Architecture(
        model_type=model_type,
        architectures=tuple(str(a) for a in architectures) if isinstance(architectures, list) else (),
        layers=int(layers),
        hidden=int(hidden),
        heads=int(heads),
        kv_heads=_kv_heads(config, int(heads)),
        head_dim=int(head_dim),
        intermediate=int(intermediate),
        vocab=int(vocab),
        max_context=int(_first(config, "max_context") or _DEFAULT_MAX_CONTEXT),
        tie_embeddings=bool(config.get("tie_word_embeddings", False)),
    )
