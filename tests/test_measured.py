"""The user's own measurements: kept per model + branch + backend + context + cache, shown in the
catalog, and correcting the estimate for other contexts of the same model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from app.backends.base import LoadedModel
from app.catalog.architecture import architecture_from_config
from app.catalog.branch import BranchInfo
from app.catalog.measured import MeasuredPeak, MeasuredStore
from app.catalog.quantization import QuantizationParams
from app.catalog.table import evaluate
from app.catalog.vram import CacheType
from app.chat.engine import ChatSession, ReplyEnd
from app.chat.session_setup import LocalTarget, PeakRecorder, plan_local_chat
from app.hardware import GpuInfo, Hardware
from app.units import GIB, MIB
from tests.hub_emulator import HubEmulator
from tests.models.fixtures import TINY_MAIN

ROOT = Path(__file__).resolve().parent.parent
ARCH = architecture_from_config(
    {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "num_hidden_layers": 32,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_attention_heads": 32,
        "vocab_size": 32000,
        "max_position_embeddings": 16384,
    }
)
BRANCH = BranchInfo(
    repo_id="org/Llama-7B-GPTQ",
    branch="main",
    commit="c" * 40,
    is_gptq=True,
    quantization=QuantizationParams(bits=4, group_size=128, act_order=False),
    architecture=ARCH,
)
ONE_GPU = Hardware((GpuInfo(0, "Test GPU", "uuid-0", 24 * GIB, 23 * GIB),), 64 * GIB, 32 * GIB)


def _peak(context: int, peak: int, **kw: object) -> MeasuredPeak:
    fields: dict[str, object] = {
        "repo_id": "org/Llama-7B-GPTQ",
        "branch": "main",
        "backend": "exllamav2",
        "context": context,
        "cache_type": "fp16",
        "prompt_tokens": 1000,
        "peak_bytes": peak,
    }
    fields.update(kw)
    return MeasuredPeak(**fields)  # type: ignore[arg-type]


def test_a_newer_measurement_replaces_only_its_own_key(tmp_path: Path) -> None:
    store = MeasuredStore(tmp_path / "m.json")
    store.record(_peak(4096, 5 * GIB, measured_at=1.0))
    store.record(_peak(8192, 6 * GIB))
    store.record(_peak(4096, 5 * GIB, cache_type="q4"))
    store.record(_peak(4096, 5 * GIB + 1, measured_at=2.0))
    kept = {(m.context, m.cache_type): m.peak_bytes for m in store.all()}
    assert kept == {(4096, "fp16"): 5 * GIB + 1, (8192, "fp16"): 6 * GIB, (4096, "q4"): 5 * GIB}
    assert MeasuredStore(tmp_path / "m.json").for_repo("other/repo") == []


def test_a_damaged_file_is_set_aside_not_deleted(tmp_path: Path) -> None:
    for damage in (b"{not json", b"\xff\xfe\x00garbage", b'{"measurements": 3}'):
        path = tmp_path / "m.json"
        path.write_bytes(damage)
        store = MeasuredStore(path)
        assert store.all() == []
        assert store.warning and "set aside" in store.warning
        aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
        assert len(aside) == 1 and aside[0].read_bytes() == damage
        aside[0].unlink()
        store.record(_peak(4096, GIB))  # and the store works again
        assert len(MeasuredStore(path).all()) == 1
        path.unlink()


def test_a_measurement_corrects_the_fixed_part_and_keeps_the_formulas_growth() -> None:
    [plain] = evaluate((BRANCH,), 4096, CacheType.FP16, ONE_GPU, prompt=1000)
    formula_4k = plain.backend("exllamav2").vram
    assert formula_4k is not None and plain.backend("exllamav2").measurement is None
    # This machine needed 300 MiB more than the formula's allocated peak at 4096 tokens.
    measured = _peak(4096, formula_4k.allocated + 300 * MIB)
    [here] = evaluate((BRANCH,), 4096, CacheType.FP16, ONE_GPU, prompt=1000, measurements=[measured])
    exact = here.backend("exllamav2")
    assert exact.measured_here == measured.peak_bytes and exact.measured_exact
    assert exact.vram is not None and exact.vram.total == formula_4k.total + 300 * MIB
    # At 8192 tokens: the learned fixed part plus the formula's KV cache for 8192 tokens.
    [plain_8k] = evaluate((BRANCH,), 8192, CacheType.FP16, ONE_GPU, prompt=1000)
    [other] = evaluate((BRANCH,), 8192, CacheType.FP16, ONE_GPU, prompt=1000, measurements=[measured])
    corrected = other.backend("exllamav2")
    assert corrected.measurement == measured and not corrected.measured_exact
    assert corrected.measured_here is None
    formula_8k = plain_8k.backend("exllamav2").vram
    assert corrected.vram is not None and formula_8k is not None
    assert corrected.vram.total == formula_8k.total + 300 * MIB
    assert corrected.vram.kv_cache == formula_8k.kv_cache == 2 * formula_4k.kv_cache
    # Another backend, branch, cache type or repo is not corrected by it.
    assert other.backend("gptqmodel").measurement is None
    [q4] = evaluate((BRANCH,), 8192, CacheType.Q4, ONE_GPU, prompt=1000, measurements=[measured])
    assert q4.backend("exllamav2").measurement is None


def test_a_measurement_lower_than_the_formula_lowers_the_estimate() -> None:
    [plain] = evaluate((BRANCH,), 4096, CacheType.FP16, ONE_GPU, prompt=1000)
    formula = plain.backend("exllamav2").vram
    assert formula is not None
    measured = _peak(4096, formula.allocated - 200 * MIB)
    [row] = evaluate((BRANCH,), 16384, CacheType.FP16, ONE_GPU, prompt=1000, measurements=[measured])
    [plain_16k] = evaluate((BRANCH,), 16384, CacheType.FP16, ONE_GPU, prompt=1000)
    got, want = row.backend("exllamav2").vram, plain_16k.backend("exllamav2").vram
    assert got is not None and want is not None and got.total == want.total - 200 * MIB


def test_the_nearest_context_wins() -> None:
    near, far = _peak(8192, 7 * GIB), _peak(2048, 5 * GIB)
    [row] = evaluate((BRANCH,), 6144, CacheType.FP16, ONE_GPU, prompt=1000, measurements=[far, near])
    assert row.backend("exllamav2").measurement == near


def test_a_real_reply_records_its_peak_and_the_catalog_shows_it(
    tiny_gptqmodel: LoadedModel, tiny_models: dict[str, Path]
) -> None:
    """The tiny Llama on the CPU: after a reply, the peak is kept under the model's repo and branch."""
    target = LocalTarget(tiny_models[TINY_MAIN], "org/TinyLlama-GPTQ", TINY_MAIN)
    plan = plan_local_chat(target)
    store = MeasuredStore()
    peaks = PeakRecorder(plan, tiny_gptqmodel, "fp16", store)
    session = ChatSession(tiny_gptqmodel, plan.choice)
    end = [item for item in session.send("Hello there") if isinstance(item, ReplyEnd)][-1]
    assert peaks.after_reply(end.stats.prompt_tokens) is None
    [kept] = MeasuredStore().for_repo("org/TinyLlama-GPTQ")
    assert (kept.branch, kept.backend, kept.device) == (TINY_MAIN, "gptqmodel", "cpu")
    assert kept.context == tiny_gptqmodel.context_length and kept.cache_type == "fp16"
    assert kept.prompt_tokens == end.stats.prompt_tokens > 0
    assert kept.peak_bytes >= tiny_gptqmodel.memory_bytes
    assert kept.reserved_bytes is None  # the allocator reserve is a CUDA figure


def test_branches_shows_measured_here_and_plans_for_the_prompt(hub: HubEmulator) -> None:
    """`quantdesk branches --prompt N` and a measurement stored by an earlier chat on this machine."""
    home = Path(os.environ["QUANTDESK_HOME"])
    measured = MeasuredPeak("TheBloke/TinyLlama-GPTQ", "main", "gptqmodel", 1024, "fp16", 200, 3 * MIB, "cpu")
    MeasuredStore(home / "data" / "measured_memory.json").record(measured)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    args = [sys.executable, "-m", "app.cli", "branches", "TheBloke/TinyLlama-GPTQ", "--context", "1024"]
    result = subprocess.run([*args, "--prompt", "300"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    assert "prompts up to 300 tokens" in result.stdout
    assert "main / GPTQModel: measured here: 3.00 MiB RAM at this context" in result.stdout
    as_json = subprocess.run([*args, "--json"], capture_output=True, text=True, cwd=ROOT, env=env)
    main = next(r for r in json.loads(as_json.stdout) if r["branch"] == "main")
    assert main["prompt"] == 512  # the default share of a 1024-token context
    mine = main["backends"]["gptqmodel"]["measured"]
    assert mine == {"peak_bytes": 3 * MIB, "context": 1024, "prompt_tokens": 200, "exact": True}
