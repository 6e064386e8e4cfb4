"""The branch catalog end to end against the local Hub emulator and the fixture repos."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import errors
from app.catalog.cache import CatalogCache
from app.catalog.hub_client import HubClient
from app.catalog.repo_ref import RepoRef, parse_repo_ref
from app.catalog.service import Catalog, RepoCatalog
from app.catalog.table import evaluate_branch, row_to_json
from app.catalog.vram import GIB, CacheType
from app.hardware import Hardware, planned_hardware
from app.paths import app_paths
from tests.conftest import GRANTED_TOKEN, UNGRANTED_TOKEN
from tests.fixtures import RepoSpec
from tests.hub_emulator import Faults, HubEmulator

TINY = "TheBloke/TinyLlama-GPTQ"
NO_GPU = Hardware(
    gpus=(), ram_total_bytes=24 * GIB, ram_available_bytes=20 * GIB, gpu_note="No NVIDIA driver."
)


def _catalog(token: str | None = None) -> Catalog:
    return Catalog(client_factory=lambda: HubClient(token=token))


def _disk_files(root: Path, repo_id: str, branch: str) -> dict[str, int]:
    base = root / repo_id / branch
    return {p.relative_to(base).as_posix(): p.stat().st_size for p in base.rglob("*") if p.is_file()}


def test_every_branch_of_the_tiny_llama_repo_lists_with_its_files_facts(
    hub: HubEmulator, fixture_specs: tuple[Path, dict[str, RepoSpec]]
) -> None:
    root, specs = fixture_specs
    catalog = _catalog().fetch(RepoRef(TINY))
    spec = specs[TINY]
    assert catalog.stale is False
    assert catalog.branches[0].branch == "main"
    assert sorted(b.branch for b in catalog.branches) == sorted(b.name for b in spec.branches)
    for branch_spec in spec.branches:
        info = catalog.branch(branch_spec.name)
        assert info is not None
        assert info.commit == hub.commit_of(TINY, branch_spec.name)
        disk = _disk_files(root, TINY, branch_spec.name)
        assert {f.path: f.size for f in info.files} == disk
        assert info.size_bytes == sum(disk.values())  # exact, to the byte
        if branch_spec.bits is None:
            assert not info.is_gptq
            continue
        q = info.quantization
        assert info.is_gptq, branch_spec.name
        assert (q.bits, q.group_size, q.act_order) == (
            branch_spec.bits,
            branch_spec.group_size,
            branch_spec.act_order,
        )
        assert [f.path for f in info.weight_files] == [branch_spec.weight_file]
        assert info.weight_files[0].sha256 is not None and len(info.weight_files[0].sha256) == 64
        assert info.architecture is not None and info.architecture.model_type == "llama"
        assert info.dataset == branch_spec.dataset and info.seq_len == branch_spec.seq_len


def test_quantization_sources_and_disagreements_are_reported(hub: HubEmulator) -> None:
    catalog = _catalog().fetch(RepoRef(TINY))
    main = catalog.branch("main")
    eight = catalog.branch("gptq-8bit-32g-actorder_True")
    card_only = catalog.branch("gptq-4bit-64g-actorder_True")
    disagreeing = catalog.branch("gptq-4bit-128g-actorder_False")
    assert main and eight and card_only and disagreeing
    assert main.quantization.source == "quantize_config.json"
    assert main.quantization.damp_percent == 0.01 and main.quantization.sym is True
    assert eight.quantization.source == "config.json"
    assert card_only.quantization.source == "model card"
    assert (card_only.quantization.bits, card_only.quantization.group_size) == (4, 64)
    assert any("no quantize_config.json" in w for w in card_only.warnings)
    # The card claims 64g; the branch's own files say 128g and win.
    assert disagreeing.quantization.group_size == 128
    assert any("model card says group size 64" in w and "128" in w for w in disagreeing.warnings)
    assert not main.warnings


def test_branch_without_gptq_weights_is_marked_and_does_not_sink_the_table(hub: HubEmulator) -> None:
    catalog = _catalog().fetch(RepoRef(TINY))
    fp16 = catalog.branch("fp16")
    assert fp16 is not None and not fp16.is_gptq
    assert "unquantized" in fp16.not_gptq_reason
    row = evaluate_branch(fp16, None, CacheType.FP16, NO_GPU)
    assert row.best_backend is None and "Not GPTQ" in row.fit.message
    assert sum(b.is_gptq for b in catalog.branches) == 7


def test_templates_come_from_the_model_first_then_the_card(hub: HubEmulator) -> None:
    tiny = _catalog().fetch(RepoRef(TINY)).branch("main")
    chatml = _catalog().fetch(RepoRef("TheBloke/TinyChatML-GPTQ"))
    assert tiny is not None and (tiny.template.name, tiny.template.source) == ("Vicuna", "model card")
    jinja_file = chatml.branch("main")
    in_tokenizer = chatml.branch("gptq-8bit-128g-actorder_True")
    assert jinja_file is not None and in_tokenizer is not None
    assert (jinja_file.template.name, jinja_file.template.source) == ("jinja", "chat_template.jinja")
    assert (in_tokenizer.template.name, in_tokenizer.template.source) == ("jinja", "tokenizer_config.json")
    assert "<|im_start|>" in (jinja_file.template.text or "")


def test_card_without_table_still_lists_from_the_branch_files(hub: HubEmulator) -> None:
    catalog = _catalog().fetch(parse_repo_ref("TheBloke/NoTable-GPTQ"))
    (main,) = catalog.branches
    assert main.is_gptq and (main.quantization.bits, main.quantization.group_size) == (4, 128)
    assert main.quantization.act_order is False
    assert main.template.name == "Guanaco" and main.template.source == "model card"
    assert main.weight_files[0].path == "NoTable-GPTQ-4bit-128g.no-act-order.safetensors"


def test_backend_reasons_a_user_understands(hub: HubEmulator) -> None:
    tiny = _catalog().fetch(RepoRef(TINY))
    falcon = _catalog().fetch(RepoRef("TheBloke/TinyFalcon-GPTQ")).branches[0]
    three_bit = tiny.branch("gptq-3bit-128g-actorder_True")
    main = tiny.branch("main")
    assert three_bit and main
    gpu = planned_hardware(NO_GPU, [24])

    exl = evaluate_branch(three_bit, None, CacheType.FP16, gpu).backend("exllamav2")
    assert not exl.compatibility.compatible
    assert exl.compatibility.reason == "ExLlamaV2 loads 4-bit GPTQ only; this branch is 3-bit."
    falcon_row = evaluate_branch(falcon, None, CacheType.FP16, gpu)
    assert (
        "does not support the FalconForCausalLM architecture"
        in falcon_row.backend("exllamav2").compatibility.reason
    )
    assert falcon_row.best_backend == "gptqmodel"
    assert falcon.architecture is not None and falcon.architecture.kv_heads == 1

    no_gpu_row = evaluate_branch(main, None, CacheType.FP16, NO_GPU)
    assert "needs an NVIDIA GPU" in no_gpu_row.backend("exllamav2").compatibility.reason
    assert no_gpu_row.best_backend == "gptqmodel"
    assert str(no_gpu_row.fit.status) == "CPU only" and "No NVIDIA driver." in no_gpu_row.fit.message

    gpu_row = evaluate_branch(main, None, CacheType.FP16, gpu)
    assert gpu_row.best_backend == "exllamav2" and str(gpu_row.fit.status) == "fits"


def test_vram_follows_context_and_cache_type_without_network(hub: HubEmulator) -> None:
    main = _catalog().fetch(RepoRef(TINY)).branch("main")
    assert main is not None
    hub.reset()
    gpu = planned_hardware(NO_GPU, [24])
    short = evaluate_branch(main, 512, CacheType.FP16, gpu).backend("exllamav2").vram
    long = evaluate_branch(main, 2048, CacheType.FP16, gpu).backend("exllamav2").vram
    q4 = evaluate_branch(main, 2048, CacheType.Q4, gpu).backend("exllamav2").vram
    gptq_q4 = evaluate_branch(main, 2048, CacheType.Q4, gpu).backend("gptqmodel")
    assert short and long and q4
    assert long.kv_cache == 4 * short.kv_cache
    assert q4.kv_cache < long.kv_cache
    assert gptq_q4.cache_type is CacheType.FP16  # GPTQModel has no quantized cache
    # ExLlamaV2 keeps the embedding table on the CPU, GPTQModel does not.
    arch = main.architecture
    assert arch is not None and long.weights == main.weight_bytes - arch.embedding_bytes
    assert hub.requests == []


def test_json_row_has_every_documented_field(hub: HubEmulator) -> None:
    main = _catalog().fetch(RepoRef(TINY)).branch("main")
    assert main is not None
    data = row_to_json(evaluate_branch(main, 1024, CacheType.FP16, NO_GPU))
    for key in (
        "branch",
        "commit",
        "bits",
        "group_size",
        "act_order",
        "damp_percent",
        "dataset",
        "seq_len",
        "size_bytes",
        "files",
        "model_type",
        "exllama",
        "backends",
        "fits",
        "template",
        "template_source",
        "description",
        "warnings",
    ):
        assert key in data, key
    assert data["exllama"] is True and data["backends"]["exllamav2"]["compatible"] is False
    assert set(data["backends"]) == {"exllamav2", "gptqmodel"}
    assert data["backends"]["gptqmodel"]["vram_bytes"] > data["backends"]["exllamav2"]["vram_bytes"] - GIB
    json.dumps(data)


# -- errors ---------------------------------------------------------------------------------------


def test_unknown_repo(hub: HubEmulator) -> None:
    with pytest.raises(errors.RepoNotFoundError) as info:
        _catalog().fetch(RepoRef("TheBloke/Does-Not-Exist-GPTQ"))
    assert "not found" in info.value.user_message and "spelling" in info.value.user_message


def test_unknown_branch_names_the_existing_ones(hub: HubEmulator) -> None:
    with pytest.raises(errors.RevisionNotFoundError) as info:
        _catalog().fetch(RepoRef(TINY, "gptq-5bit-nonsense"))
    assert "gptq-5bit-nonsense" in info.value.message and "gptq-3bit--1g-actorder_True" in info.value.hint


def test_single_branch_request_lists_only_that_branch(hub: HubEmulator) -> None:
    catalog = _catalog().fetch(parse_repo_ref(f"{TINY}:gptq-4bit-32g-actorder_True"))
    assert [b.branch for b in catalog.branches] == ["gptq-4bit-32g-actorder_True"]


def test_gated_repo_without_token_lists_its_branches_and_gates_only_the_download(hub: HubEmulator) -> None:
    # The Hub serves a gated repo's branch list and file tree to anyone: show the table.
    catalog = _catalog().fetch(RepoRef("TheBloke/Gated-GPTQ"))
    assert catalog.branches and catalog.branches[0].size_bytes > 0
    assert "gated" in catalog.access_note and "token" in catalog.access_note
    assert any("need access" in w for w in catalog.branches[0].warnings)
    # Not cached: once a token is added the full facts (configs) are fetched.
    assert _catalog().cached(RepoRef("TheBloke/Gated-GPTQ")) is None


def test_gated_repo_with_ungranted_token(hub: HubEmulator) -> None:
    catalog = _catalog(UNGRANTED_TOKEN).fetch(RepoRef("TheBloke/Gated-GPTQ"))
    assert catalog.branches and "not been granted" in catalog.access_note
    assert UNGRANTED_TOKEN not in catalog.access_note


def test_gated_repo_with_granted_token_lists(hub: HubEmulator) -> None:
    catalog = _catalog(GRANTED_TOKEN).fetch(RepoRef("TheBloke/Gated-GPTQ"))
    assert catalog.branches[0].is_gptq
    assert any(r.headers.get("authorization") == f"Bearer {GRANTED_TOKEN}" for r in hub.requests)


def test_token_from_hf_token_env_is_used(hub: HubEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", GRANTED_TOKEN)
    assert Catalog().fetch(RepoRef("TheBloke/Gated-GPTQ")).branches[0].is_gptq


def test_rejected_token(hub: HubEmulator) -> None:
    with pytest.raises(errors.TokenRejectedError) as info:
        _catalog("hf_bogus_token").fetch(RepoRef(TINY))
    assert "rejected your Hugging Face token" in info.value.message
    assert "hf_bogus_token" not in info.value.user_message


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_network_down_without_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(errors.NetworkError) as info:
        _catalog().fetch(RepoRef(TINY))
    assert "Could not reach the Hub" in info.value.message


def test_network_down_shows_the_cached_table_marked_stale(
    hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = _catalog().fetch(RepoRef(TINY))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    stale = _catalog().fetch(RepoRef(TINY))
    assert stale.stale and "Could not reach the Hub" in stale.stale_reason
    assert [b.branch for b in stale.branches] == [b.branch for b in fresh.branches]
    assert stale.branches == fresh.branches


def test_persistent_5xx_is_a_server_error(hub: HubEmulator) -> None:
    hub.faults = Faults(path_contains="/refs", fail_first=100, fail_status=503)
    with pytest.raises(errors.HubServerError) as info:
        _catalog().fetch(RepoRef(TINY))
    assert "503" in info.value.message


def test_brief_5xx_burst_is_retried(hub: HubEmulator) -> None:
    hub.faults = Faults(fail_first=2, fail_status=502)
    catalog = _catalog().fetch(RepoRef(TINY))
    assert all(not b.error for b in catalog.branches)
    assert sum(r.status == 502 for r in hub.requests) == 2


def test_one_failing_branch_does_not_sink_the_table(hub: HubEmulator) -> None:
    # The catalog reads each branch at its commit, so that is what the failing URL contains.
    commit = hub.commit_of(TINY, "gptq-3bit--1g-actorder_True")
    # 400 rather than 5xx: huggingface_hub retries a 5xx tree listing for ~23 s before giving up.
    hub.faults = Faults(path_contains=f"tree/{commit}", fail_first=100, fail_status=400)
    catalog = _catalog().fetch(RepoRef(TINY))
    broken = catalog.branch("gptq-3bit--1g-actorder_True")
    assert broken is not None and "400" in broken.error and not broken.is_gptq
    assert all(b.is_gptq for b in catalog.branches if b.branch not in ("gptq-3bit--1g-actorder_True", "fp16"))
    # The failed branch is not cached: the next refresh tries it again and succeeds.
    hub.reset()
    again = _catalog().fetch(RepoRef(TINY)).branch("gptq-3bit--1g-actorder_True")
    assert again is not None and again.is_gptq and not again.error


def test_malformed_config_json_is_a_branch_warning(private_hub: HubEmulator) -> None:
    (private_hub.root / TINY / "main" / "config.json").write_text("{not json")
    main = _catalog().fetch(RepoRef(TINY)).branch("main")
    assert main is not None and main.architecture is None
    assert any("config.json" in w and "not valid JSON" in w for w in main.warnings)


class _GarbageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>this is not the hub</html>"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def garbage_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GarbageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    yield url
    server.shutdown()
    server.server_close()


def test_malformed_hub_answer(garbage_server: str) -> None:
    with pytest.raises(errors.MalformedResponseError) as info:
        _catalog().fetch(RepoRef(TINY))
    assert "cannot read" in info.value.message


# -- cache ----------------------------------------------------------------------------------------


def test_reopen_shows_the_cache_without_network(hub: HubEmulator) -> None:
    fetched = _catalog().fetch(RepoRef(TINY))
    hub.reset()
    cached = _catalog().cached(RepoRef(TINY))
    assert cached is not None and cached.stale
    assert cached.branches == fetched.branches
    assert hub.requests == []
    assert CatalogCache(app_paths().catalog_cache_dir).path_for(TINY).is_file()


def test_refresh_refetches_only_branches_whose_commit_moved(private_hub: HubEmulator) -> None:
    first = _catalog().fetch(RepoRef(TINY))
    private_hub.reset()
    unchanged = _catalog().fetch(RepoRef(TINY))
    assert unchanged.branches == first.branches
    assert [r.path for r in private_hub.requests] == [f"/api/models/{TINY}/refs"]

    branch_dir = private_hub.root / TINY / "gptq-4bit-32g-actorder_True"
    (branch_dir / "extra-notes.txt").write_text("a new file moves the branch's commit\n")
    private_hub.reset()
    updated = _catalog().fetch(RepoRef(TINY))
    trees = [r.path for r in private_hub.requests if "/tree/" in r.path]
    new_commit = private_hub.commit_of(TINY, "gptq-4bit-32g-actorder_True")
    assert trees == [f"/api/models/{TINY}/tree/{new_commit}"]
    info = updated.branch("gptq-4bit-32g-actorder_True")
    assert info is not None and info.commit == new_commit
    assert "extra-notes.txt" in {f.path for f in info.files}


def test_corrupt_cache_file_is_ignored(hub: HubEmulator) -> None:
    cache = CatalogCache(app_paths().catalog_cache_dir)
    cache.directory.mkdir(parents=True)
    cache.path_for(TINY).write_text("{ truncated")
    assert _catalog().cached(RepoRef(TINY)) is None
    assert isinstance(_catalog().fetch(RepoRef(TINY)), RepoCatalog)
    assert _catalog().cached(RepoRef(TINY)) is not None
