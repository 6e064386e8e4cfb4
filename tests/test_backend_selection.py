"""Backend selection for every catalog fixture branch, with and without (simulated) CUDA + exllamav2."""

from __future__ import annotations

import pytest

from app.backends import BACKENDS, backend_by_name, select
from app.backends.base import Probe
from app.backends.exllamav2 import ExLlamaV2Rules
from app.backends.gptqmodel import GPTQModelRules
from app.catalog.branch import BranchInfo
from app.catalog.hub_client import HubClient
from app.catalog.repo_ref import RepoRef
from app.catalog.service import Catalog
from app.catalog.vram import GIB
from app.errors import BackendRefusedError, NoCompatibleBackendError
from app.hardware import GpuInfo, Hardware
from tests.hub_emulator import HubEmulator

NO_GPU = Hardware(gpus=(), ram_total_bytes=24 * GIB, ram_available_bytes=20 * GIB, gpu_note="No driver.")
GPU = Hardware(
    gpus=(GpuInfo(0, "NVIDIA RTX 4090", "GPU-0", 24 * GIB, 23 * GIB),),
    ram_total_bytes=64 * GIB,
    ram_available_bytes=60 * GIB,
    exllamav2_installed=True,
)
REPOS = (
    "TheBloke/TinyLlama-GPTQ",
    "TheBloke/TinyChatML-GPTQ",
    "TheBloke/TinyFalcon-GPTQ",
    "TheBloke/NoTable-GPTQ",
)


@pytest.fixture
def exllama_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate a CUDA machine with exllamav2 installed (this one has neither)."""
    monkeypatch.setattr(
        ExLlamaV2Rules, "probe", lambda self: Probe(True, "ExLlamaV2 0.3.2 is installed.", "0.3.2")
    )


def _branches(hub: HubEmulator) -> list[BranchInfo]:
    catalog = Catalog(client_factory=lambda: HubClient(token=None))
    return [b for repo in REPOS for b in catalog.fetch(RepoRef(repo)).branches]


def _expected_with_cuda(info: BranchInfo) -> str:
    llama = info.architecture is not None and info.architecture.model_type == "llama"
    return "exllamav2" if info.quantization.bits == 4 and llama else "gptqmodel"


def test_every_fixture_branch_with_cuda_and_exllamav2(hub: HubEmulator, exllama_installed: None) -> None:
    seen = set()
    for info in _branches(hub):
        if not info.is_gptq:
            with pytest.raises(NoCompatibleBackendError) as err:
                select(info, GPU)
            assert "Not a GPTQ branch" in err.value.hint
            continue
        choice = select(info, GPU)
        expected = _expected_with_cuda(info)
        seen.add(expected)
        assert choice.backend.name == expected, info.branch
        assert [c.name for c in choice.considered] == ["exllamav2", "gptqmodel"]
        exl = choice.considered[0].compatibility
        if expected == "gptqmodel":
            assert not exl.compatible
            if info.quantization.bits != 4:
                assert (
                    exl.reason
                    == f"ExLlamaV2 loads 4-bit GPTQ only; this branch is {info.quantization.bits}-bit."
                )
            else:
                assert "does not support the FalconForCausalLM architecture" in exl.reason
            assert choice.reason.startswith(f"Loads {info.quantization.bits}-bit GPTQ on the GPU")
        else:
            assert exl.compatible and "fastest" in choice.reason
            assert choice.considered[1].compatibility.compatible  # GPTQModel could too: the fallback
    assert seen == {"exllamav2", "gptqmodel"}


def test_every_fixture_branch_without_cuda(hub: HubEmulator, exllama_installed: None) -> None:
    for info in _branches(hub):
        if not info.is_gptq:
            continue
        choice = select(info, NO_GPU)
        assert choice.backend.name == "gptqmodel", info.branch
        assert "on the CPU" in choice.reason
        exl = choice.considered[0].compatibility
        assert not exl.compatible
        if info.quantization.bits == 4 and _expected_with_cuda(info) == "exllamav2":
            assert exl.reason == "ExLlamaV2 needs an NVIDIA GPU with CUDA; none was found here."


def test_cuda_without_a_usable_exllamav2_falls_back_with_the_probe_reason(hub: HubEmulator) -> None:
    main = next(b for b in _branches(hub) if b.repo_id == "TheBloke/TinyLlama-GPTQ" and b.branch == "main")
    choice = select(main, GPU)  # the real probe: exllamav2 is not installed here (or torch is CPU-only)
    assert choice.backend.name == "gptqmodel"
    reason = choice.considered[0].compatibility.reason
    assert "not installed" in reason or "CUDA build of PyTorch" in reason


def test_override_that_cannot_work_is_refused_with_the_reason(
    hub: HubEmulator, exllama_installed: None
) -> None:
    branches = {(b.repo_id, b.branch): b for b in _branches(hub)}
    three_bit = branches[("TheBloke/TinyLlama-GPTQ", "gptq-3bit-128g-actorder_True")]
    with pytest.raises(BackendRefusedError) as err:
        select(three_bit, GPU, override="exllamav2")
    assert "4-bit GPTQ only; this branch is 3-bit" in err.value.message
    main = branches[("TheBloke/TinyLlama-GPTQ", "main")]
    with pytest.raises(BackendRefusedError) as err:
        select(main, NO_GPU, override="exllamav2")
    assert "needs an NVIDIA GPU" in err.value.message
    with pytest.raises(BackendRefusedError):
        select(main, GPU, override="auto-gptq")
    forced = select(main, GPU, override="gptqmodel")
    assert forced.backend.name == "gptqmodel" and forced.overridden


def test_probes_need_no_import_and_tell_why() -> None:
    gptq = GPTQModelRules().probe()
    assert gptq.available and gptq.version == "7.6.0"
    exl = ExLlamaV2Rules().probe()
    assert exl.available or exl.reason  # here: not installed, or installed without a CUDA torch
    assert [b.name for b in BACKENDS] == ["exllamav2", "gptqmodel"]
    assert backend_by_name("gptqmodel").runs_on_cpu
