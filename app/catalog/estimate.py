"""Peak memory of a loaded GPTQ model, part by part, for one software stack.

The estimate separates what depends on the context from what depends on the prompt:

- **weights**: the checkpoint's tensors on the device (ExLlama keeps the embedding table on the CPU).
- **KV cache**: grows with the context (:func:`app.catalog.vram.kv_cache_bytes`). Measured alone: the
  Qwen3 speed benchmark (GPTQModel 2.2) grows by exactly the fp16 KV cache per token, 112 KiB for
  Qwen3-0.6B and -1.7B alike, from 1 to 30,720 input tokens.
- **prefill**: the transient of processing the prompt, sized by the *chunk* the backend processes at
  once (ExLlama's ``max_input_len``; transformers takes the whole prompt): activations per chunk token
  (hidden- and intermediate-sized fp16 tensors), attention scores where the stack materialises them
  (eager attention: heads x chunk x prompt, capped by ExLlama's ``max_attention_size``) and float32
  logits for every prompt position in stacks that compute them. With a cache that grows token by token
  (transformers' dynamic cache) the prefill happens while the cache holds only the prompt, so only the
  part beyond the room the rest of the context will take later counts.
- **buffers**: fixed per backend and device: scratch sized by the chunk setting (ExLlama's
  ``temp_state``), a dequantization buffer for the largest linear layer, and a small constant.
- **reserve**: what PyTorch's caching allocator holds beyond the allocated peak (only device-level
  figures such as nvidia-smi see it), and memory a loader keeps free on purpose.
- **CUDA context**: per GPU, seen only by device-level figures.

Each :class:`StackProfile` is data about one stack; the docstring of :data:`STACKS` says which
measurement each number rests on. ``benchmarks/estimates.py`` prints measured vs estimated for every
row of ``app/catalog/data/measurements.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.catalog.architecture import Architecture
from app.catalog.vram import CUDA_CONTEXT_BYTES, CacheType, VramBreakdown, kv_cache_bytes
from app.units import MIB

FP16 = 2
FP32 = 4


@dataclass(frozen=True)
class StackProfile:
    """How one inference stack spends device memory beyond weights and KV cache (all data, no code).

    Activation counts are fp16 tensors per token of the prompt chunk, in units of the model's hidden
    (``*_hidden``) or intermediate (``*_intermediate``) size.
    """

    name: str
    software: str
    embeddings_on_gpu: bool = True
    cache_preallocated: bool = False  # the whole context's cache is allocated at load (ExLlama)
    max_input_len: int | None = None  # prompt tokens per forward pass (the chunk); None: all at once
    max_attention: int | None = None  # attention score elements per head per pass (ExLlama)
    chunk_buffer_hidden: float = 0.0  # persistent buffers sized by max_input_len
    chunk_buffer_intermediate: float = 0.0
    dequant_buffer_bits: tuple[int, ...] = ()  # bit widths whose kernel dequantizes a whole layer
    dequant_cap: int | None = None  # elements; ExLlamaV2 caps it at max_dq_size
    fixed_bytes: int = 0
    prefill_hidden: float = 0.0
    prefill_intermediate: float = 0.0
    attention_score_copies: float = 0.0  # fp16 heads x chunk x prompt matrices alive at once
    logits_all_positions: bool = False  # float32 logits for every prompt token
    reserve_kv_share: float = 0.0  # caching-allocator slack as a share of the KV cache
    loader_reserve: int = 0  # kept free by the loader on the first device (ExLlamaV2 autosplit)
    cuda_context: int = 0


def _largest_linear(arch: Architecture) -> int:
    return max(i * o for i, o in arch.linears())


def chunk_tokens(stack: StackProfile, prompt: int) -> int:
    """Prompt tokens the stack processes in one forward pass."""
    return min(prompt, stack.max_input_len) if stack.max_input_len else prompt


def buffer_bytes(stack: StackProfile, arch: Architecture, bits: int | None) -> int:
    """Fixed buffers of one device: chunk-sized scratch, the dequantization buffer, the constant."""
    scratch = (
        (stack.max_input_len or 0)
        * FP16
        * (stack.chunk_buffer_hidden * arch.hidden + stack.chunk_buffer_intermediate * arch.intermediate)
    )
    dequant = 0
    if bits in stack.dequant_buffer_bits:
        elements = _largest_linear(arch)
        dequant = FP16 * (min(elements, stack.dequant_cap) if stack.dequant_cap else elements)
    return int(scratch + dequant + stack.fixed_bytes)


def prefill_transient_bytes(stack: StackProfile, arch: Architecture, prompt: int) -> int:
    """Peak transient of processing a ``prompt``-token prompt (activations, scores, logits)."""
    chunk = chunk_tokens(stack, prompt)
    activations = (
        chunk * FP16 * (stack.prefill_hidden * arch.hidden + stack.prefill_intermediate * arch.intermediate)
    )
    score_elements = chunk * prompt
    if stack.max_attention:
        score_elements = min(score_elements, stack.max_attention)
    scores = stack.attention_score_copies * arch.heads * score_elements * FP16
    logits = chunk * arch.vocab * FP32 if stack.logits_all_positions else 0
    return int(activations + scores + logits)


def estimate_memory(
    arch: Architecture,
    checkpoint_bytes: int,
    bits: int | None,
    stack: StackProfile,
    context: int,
    prompt: int,
    cache_type: CacheType = CacheType.FP16,
    devices: int = 1,
) -> VramBreakdown:
    """Peak memory of ``arch`` on ``stack`` with a ``context``-token cache and a ``prompt``-token prompt.

    ``devices`` > 1 sums a split over several GPUs: each pays its own buffers and CUDA context.
    """
    prompt = max(1, min(prompt, context))
    weights = checkpoint_bytes if stack.embeddings_on_gpu else max(0, checkpoint_bytes - arch.embedding_bytes)
    kv_context = kv_cache_bytes(arch, context, cache_type)
    transient = prefill_transient_bytes(stack, arch, prompt)
    if stack.cache_preallocated:
        prefill = transient
    else:  # the prefill peaks while the cache holds the prompt only
        prefill = max(0, kv_cache_bytes(arch, prompt, cache_type) + transient - kv_context)
    return VramBreakdown(
        weights=weights,
        kv_cache=kv_context,
        prefill=prefill,
        buffers=buffer_bytes(stack, arch, bits) * devices,
        reserve=int(stack.reserve_kv_share * kv_context) + stack.loader_reserve,
        cuda_context=stack.cuda_context * devices,
    )


def default_prompt(context: int) -> int:
    """The longest prompt to plan for when the user does not say: a quarter of the context, at least
    512 tokens (a long pasted document; the reply and the history take the rest)."""
    return max(1, min(context, max(512, context // 4)))


# The CUDA context: the optimum rows (A100, torch 2.0, nvidia-smi) are the only ones that include it,
# and fit 0.5 GiB (the upper end of NOTES.md's 0.3-0.5 GiB); QuantDesk plans with it for every GPU.
CUDA_CONTEXT = CUDA_CONTEXT_BYTES

STACKS: dict[str, StackProfile] = {
    # ExLlama (v1), per its model.py: temp_state (max_input_len x intermediate) and temp_dq (largest
    # layer) per device; the prompt is split so that attention scores stay <= 2048^2 per head; the
    # embedding table stays on the CPU; the cache is allocated at load. Scores in fp16 plus softmax's
    # output (2 copies) and ~8 hidden-sized tensors per chunk token (hidden state, residual, q, k, v,
    # attention output, norm output, rope temporaries), counted from the source rather than fitted,
    # reproduce the README's ten single-GPU and two-GPU peaks within -0.6 ... +0.5 % (RTX 4090).
    "exllama-v1": StackProfile(
        name="exllama-v1",
        software="ExLlama (v1), 2023-06",
        embeddings_on_gpu=False,
        cache_preallocated=True,
        max_input_len=2048,
        max_attention=2048**2,
        chunk_buffer_intermediate=1.0,
        dequant_buffer_bits=(4,),
        fixed_bytes=32 * MIB,
        prefill_hidden=8.0,
        attention_score_copies=2.0,
    ),
    # ExLlamaV2 0.3.2, per its source (mlp.py/attn.py scratch_space, model.py load_autosplit): fixed
    # scratch per device = max_input_len x (hidden + 2 x intermediate) fp16 plus the largest layer
    # dequantized (capped at max_dq_size = 512 Mi elements); autosplit keeps 192 MiB free on the first
    # device; prompt chunks and attention as in v1 (no flash-attn assumed: eager scores). No published
    # ExLlamaV2 figure is in the table yet: the transient terms are v1's, which the README supports.
    "exllamav2": StackProfile(
        name="exllamav2",
        software="ExLlamaV2 0.3.2",
        embeddings_on_gpu=False,
        cache_preallocated=True,
        max_input_len=2048,
        max_attention=2048**2,
        chunk_buffer_hidden=1.0,
        chunk_buffer_intermediate=2.0,
        dequant_buffer_bits=(4,),
        dequant_cap=512 * 1024**2,
        fixed_bytes=32 * MIB,
        prefill_hidden=8.0,
        attention_score_copies=2.0,
        loader_reserve=192 * MIB,
        cuda_context=CUDA_CONTEXT,
    ),
    # GPTQModel 2.2 + transformers 4.51 + flash-attn (Qwen3 speed benchmark, H20, peak allocated): after
    # weights and the KV cache a constant 33-35 MiB remains at every input length for both model sizes,
    # so the prefill transient hides inside the cache room of the 2,048 generated tokens. Two
    # hidden-sized tensors per prompt token (hidden state, residual) is the least a prefill must hold; the
    # measurements bound it from above (<= 224 MiB at 30,720 tokens).
    "gptqmodel-2.2": StackProfile(
        name="gptqmodel-2.2",
        software="GPTQModel 2.2 + transformers 4.51 + flash-attn 2.7",
        fixed_bytes=34 * MIB,
        prefill_hidden=2.0,
    ),
    # AutoGPTQ 0.7.1 + transformers 4.46 + flash-attn (Qwen2.5 speed benchmark, A100, peak allocated):
    # memory grows by the KV cache plus ~4 intermediate-sized fp16 tensors per input token (gate, up,
    # activation, product: NOTES.md's first guess fits this older stack, 3.5-4.3 across the rows); the
    # 4-bit exllama kernels hold a dequantized copy of the largest layer.
    "autogptq-0.7": StackProfile(
        name="autogptq-0.7",
        software="AutoGPTQ 0.7.1 + transformers 4.46 + flash-attn 2.5",
        dequant_buffer_bits=(4,),
        fixed_bytes=40 * MIB,
        prefill_intermediate=4.0,
    ),
    # optimum + AutoGPTQ 0.4 (exllama kernel) + transformers 4.32 (optimum's GPTQ benchmark, A100,
    # nvidia-smi): the exllama kernel's buffers as in ExLlama v1, the old Llama forward's eager attention
    # (fp16 scores + fp32 softmax), float32 logits for every position, MLP as in AutoGPTQ 0.7. nvidia-smi
    # adds the CUDA context and the caching allocator's slack, which grows with the cache (the cache grew
    # by torch.cat each token): both fitted to the two rows (prefill-only and 512 + 512), so those two
    # rows check the arithmetic, not the model; 1.75 x KV and 0.5 GiB are the only nvidia-smi evidence.
    "optimum-autogptq-0.4": StackProfile(
        name="optimum-autogptq-0.4",
        software="optimum 1.12 + AutoGPTQ 0.4 (exllama kernel) + transformers 4.32",
        max_input_len=2048,
        chunk_buffer_intermediate=1.0,
        dequant_buffer_bits=(4,),
        fixed_bytes=40 * MIB,
        prefill_intermediate=4.0,
        attention_score_copies=3.0,
        logits_all_positions=True,
        reserve_kv_share=1.75,
        cuda_context=CUDA_CONTEXT,
    ),
}

# GPTQModel 7 + transformers 5 on the GPU (the GPTQModel backend's estimate): the measured GPTQModel 2.2
# stack's terms, plus what a device needs free: the CUDA context and the allocator slack of a cache
# that still grows by concatenation (the share the optimum rows show for that behaviour; no figure of
# this stack exists yet, and a user's measurement corrects the allocated part, not this slack).
STACKS["gptqmodel-app"] = StackProfile(
    name="gptqmodel-app",
    software="GPTQModel 7.6 + transformers 5",
    fixed_bytes=STACKS["gptqmodel-2.2"].fixed_bytes,
    prefill_hidden=STACKS["gptqmodel-2.2"].prefill_hidden,
    reserve_kv_share=STACKS["optimum-autogptq-0.4"].reserve_kv_share,
    cuda_context=CUDA_CONTEXT,
)
