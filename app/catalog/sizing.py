"""Size of a GPTQ checkpoint computed from the architecture alone.

Used when a branch's files cannot be listed, and as a cross-check of the listed sizes. The layout is
AutoGPTQ's "gptq" v1 format, which TheBloke's repos use: per quantized linear (in -> out) with
n = ceil(in / group_size) groups (1 when ungrouped): qweight in*out*bits/8, qzeros n*out*bits/8,
scales n*out*2 (fp16), g_idx in*4 (int32), bias out*2 (AutoGPTQ always saved one); embeddings,
lm_head (unless tied) and norms stay fp16.
"""

from __future__ import annotations

import math

from app.catalog.architecture import Architecture

FP16_BYTES = 2
INT32_BYTES = 4


def gptq_linear_bytes(in_features: int, out_features: int, bits: int, group_size: int | None) -> int:
    """Bytes one GPTQ-quantized linear layer occupies on disk and in GPU memory."""
    groups = 1 if group_size is None else math.ceil(in_features / group_size)
    qweight = in_features * out_features * bits // 8
    qzeros = groups * out_features * bits // 8
    scales = groups * out_features * FP16_BYTES
    g_idx = in_features * INT32_BYTES
    bias = out_features * FP16_BYTES
    return qweight + qzeros + scales + g_idx + bias


def unquantized_bytes(arch: Architecture) -> int:
    """fp16 bytes of the tensors GPTQ leaves alone: embeddings, lm_head (if not tied) and norms."""
    heads = 1 if arch.tie_embeddings else 2
    return heads * arch.embedding_bytes + arch.norm_params() * FP16_BYTES


def gptq_checkpoint_bytes(arch: Architecture, bits: int, group_size: int | None) -> int:
    """Total tensor bytes of a GPTQ checkpoint of ``arch`` (file headers excluded)."""
    per_layer = sum(gptq_linear_bytes(i, o, bits, group_size) for i, o in arch.linears())
    return per_layer * arch.layers + unquantized_bytes(arch)


def fp16_checkpoint_bytes(arch: Architecture) -> int:
    """Total tensor bytes of the unquantized fp16 checkpoint of ``arch``."""
    per_layer = sum(i * o for i, o in arch.linears()) * FP16_BYTES
    return per_layer * arch.layers + unquantized_bytes(arch)
