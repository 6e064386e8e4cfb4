"""Checks of the fixture-repo generator's own output (tests/fixtures/hub_repos.py)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from tests.fixtures.hub_repos import (
    CARD_COLUMNS,
    CHATML_JINJA,
    PROMPT_TEMPLATES,
    Arch,
    BranchSpec,
    RepoSpec,
    branch_file_bytes,
    build_fixture_hub,
    eight_branch_repo,
    fixture_repos,
    format_size_gb,
    fp16_tensor_shapes,
    gptq_tensor_shapes,
    write_repo,
)

_LINK = re.compile(r"^\[([^\]]+)\]\((\S+)\)$")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, RepoSpec]]:
    root = tmp_path_factory.mktemp("hub")
    return root, build_fixture_hub(root)


def _table(readme: str) -> list[dict[str, str]]:
    """Rows of the Provided-files table, as column name -> cell."""
    lines = readme.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Branch |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    assert header == list(CARD_COLUMNS)
    assert set(lines[start + 1].replace("|", "").split()) <= {"-" * len(c) for c in CARD_COLUMNS}
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        assert len(cells) == len(CARD_COLUMNS), line
        rows.append(dict(zip(CARD_COLUMNS, cells, strict=True)))
    return rows


def _header_shapes(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    with safe_open(str(path), framework="numpy") as f:
        assert f.metadata() == {"format": "pt"}
        for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
            sl = f.get_slice(name)
            out[name] = (sl.get_dtype(), tuple(sl.get_shape()))
    return out


def _all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_standard_set_layout(hub: tuple[Path, dict[str, RepoSpec]]) -> None:
    root, specs = hub
    assert list(specs) == [
        "TheBloke/TinyLlama-GPTQ",
        "TheBloke/TinyChatML-GPTQ",
        "TheBloke/TinyFalcon-GPTQ",
        "TheBloke/Gated-GPTQ",
        "TheBloke/NoTable-GPTQ",
    ]
    assert sorted(p.name for p in (root / "TheBloke").iterdir()) == sorted(s.name for s in specs.values())
    for spec in specs.values():
        repo = root / spec.org / spec.name
        assert sorted(p.name for p in repo.iterdir() if p.is_dir()) == sorted(b.name for b in spec.branches)
        assert (repo / "repo.json").exists() == spec.gated
    assert len(specs["TheBloke/TinyLlama-GPTQ"].branches) == 8


def test_gated_repo_json(hub: tuple[Path, dict[str, RepoSpec]]) -> None:
    root, _ = hub
    assert json.loads((root / "TheBloke/Gated-GPTQ/repo.json").read_text()) == {"gated": True}


def test_weight_headers_match_shapes(hub: tuple[Path, dict[str, RepoSpec]]) -> None:
    root, specs = hub
    checked = 0
    for spec in specs.values():
        for b in spec.branches:
            path = root / spec.repo_id / b.name / b.weight_file
            expected = (
                fp16_tensor_shapes(spec.arch)
                if b.bits is None
                else gptq_tensor_shapes(spec.arch, b.bits, b.group_size)
            )
            assert _header_shapes(path) == expected, (spec.repo_id, b.name)
            checked += 1
    assert checked == 13


def test_gptq_shapes_arithmetic() -> None:
    arch = Arch()
    s = gptq_tensor_shapes(arch, 4, 128)
    assert s["model.layers.0.self_attn.q_proj.qweight"] == ("I32", (8, 64))
    assert s["model.layers.0.self_attn.k_proj.qzeros"] == ("I32", (1, 4))
    assert s["model.layers.1.mlp.down_proj.scales"] == ("F16", (2, 64))  # ceil(192 / 128)
    assert s["model.layers.1.mlp.down_proj.g_idx"] == ("I32", (192,))
    assert s["model.layers.0.mlp.gate_proj.bias"] == ("F16", (192,))
    assert s["model.embed_tokens.weight"] == ("F16", (512, 64))
    assert s["lm_head.weight"] == ("F16", (512, 64))
    s3 = gptq_tensor_shapes(arch, 3, None)
    assert s3["model.layers.0.mlp.up_proj.qweight"] == ("I32", (6, 192))
    assert s3["model.layers.0.mlp.up_proj.qzeros"] == ("I32", (1, 18))
    assert s3["model.layers.0.self_attn.v_proj.qzeros"] == ("I32", (1, 3))
    assert "lm_head.weight" not in gptq_tensor_shapes(Arch(tie_embeddings=True), 4, 32)
    falcon = gptq_tensor_shapes(Arch(model_type="falcon", kv_heads=1), 4, 64)
    assert falcon["transformer.h.0.self_attention.query_key_value.qweight"] == ("I32", (8, 96))
    assert falcon["transformer.h.1.mlp.dense_4h_to_h.scales"] == ("F16", (4, 64))
    assert falcon["transformer.ln_f.bias"] == ("F16", (64,))
    with pytest.raises(ValueError):
        gptq_tensor_shapes(Arch(hidden=40, heads=4, intermediate=120), 3, 128)


def test_gptq_tensor_contents(hub: tuple[Path, dict[str, RepoSpec]]) -> None:
    root, _ = hub
    branch = root / "TheBloke/TinyLlama-GPTQ"
    with safe_open(str(branch / "gptq-4bit-128g-actorder_False/model.safetensors"), framework="numpy") as f:
        g_idx = f.get_tensor("model.layers.0.mlp.down_proj.g_idx")
        assert np.array_equal(g_idx, np.arange(192) // 128)
        # symmetric 4-bit zero point 8, stored as 7 per nibble
        assert (f.get_tensor("model.layers.0.mlp.down_proj.qzeros") == 0x77777777).all()
    with safe_open(str(branch / "gptq-4bit-32g-actorder_True/model.safetensors"), framework="numpy") as f:
        g_idx = f.get_tensor("model.layers.0.mlp.down_proj.g_idx")
        assert sorted(g_idx.tolist()) == sorted((np.arange(192) // 32).tolist())
        assert not np.array_equal(g_idx, np.arange(192) // 32)


def test_quant_config_per_source(hub: tuple[Path, dict[str, RepoSpec]]) -> None:
    root, specs = hub
    for spec in specs.values():
        for b in spec.branches:
            d = root / spec.repo_id / b.name
            config = json.loads((d / "config.json").read_text())
            has_qc = (d / "quantize_config.json").exists()
            if b.bits is None or b.quant_source == "none":
                assert "quantization_config" not in config
                assert not has_qc
                continue
            qc = config["quantization_config"]
            assert qc["quant_method"] == "gptq"
            assert qc["bits"] == b.bits
            assert qc["group_size"] == (b.group_size if b.group_size is not None else -1)
            assert qc["desc_act"] is b.act_order
            assert qc["damp_percent"] == b.damp_percent
            assert qc["sym"] is True and qc["checkpoint_format"] == "gptq"
            assert has_qc == (b.quant_source == "quantize_config")
            if has_qc:
                qfile = json.loads((d / "quantize_config.json").read_text())
                assert qfile == {
                    **{k: v for k, v in qc.items() if k != "quant_method"},
                    "model_name_or_path": None,
                    "model_file_base_name": "model",
                }
    tiny = root / "TheBloke/TinyLlama-GPTQ"
    assert not (tiny / "gptq-8bit-32g-actorder_True/quantize_config.json").exists()
    assert "quantization_config" in json.loads((tiny / "gptq-8bit-32g-actorder_True/config.json").read_text())
    assert "quantization_config" not in json.loads(
        (tiny / "gptq-4bit-64g-actorder_True/config.json").read_text()
    )


def test_configs(hub: tuple[Path, dict[str, RepoSpec]]) -> None:
    root, _ = hub
    llama = json.loads((root / "TheBloke/TinyLlama-GPTQ/main/config.json").read_text())
    assert llama["architectures"] == ["LlamaForCausalLM"]
    assert (llama["hidden_size"], llama["intermediate_size"], llama["num_key_value_heads"]) == (64, 192, 2)
    assert llama["max_position_embeddings"] == 2048 and llama["torch_dtype"] == "float16"
    falcon = json.loads((root / "TheBloke/TinyFalcon-GPTQ/main/config.json").read_text())
    assert falcon["architectures"] == ["FalconForCausalLM"]
    assert falcon["num_kv_heads"] == 1 and falcon["multi_query"] is True
    assert falcon["new_decoder_architecture"] is False
    assert "intermediate_size" not in falcon and "max_position_embeddings" not in falcon
    for name in ("generation_config.json", "special_tokens_map.json", "tokenizer.json"):
        json.loads((root / "TheBloke/TinyLlama-GPTQ/main" / name).read_text())
    tok = json.loads((root / "TheBloke/TinyLlama-GPTQ/main/tokenizer_config.json").read_text())
    assert tok["bos_token"] == "<s>" and tok["eos_token"] == "</s>"
    assert tok["tokenizer_class"] == "LlamaTokenizerFast" and "chat_template" not in tok


def test_chat_template_locations(hub: tuple[Path, dict[str, RepoSpec]]) -> None:
    root, _ = hub
    chatml = root / "TheBloke/TinyChatML-GPTQ"
    assert (chatml / "main/chat_template.jinja").read_text() == CHATML_JINJA
    assert "chat_template" not in json.loads((chatml / "main/tokenizer_config.json").read_text())
    other = chatml / "gptq-8bit-128g-actorder_True"
    assert not (other / "chat_template.jinja").exists()
    assert json.loads((other / "tokenizer_config.json").read_text())["chat_template"] == CHATML_JINJA
    assert not (root / "TheBloke/TinyLlama-GPTQ/main/chat_template.jinja").exists()


def test_readme_same_in_every_branch(hub: tuple[Path, dict[str, RepoSpec]]) -> None:
    root, specs = hub
    for spec in specs.values():
        texts = {(root / spec.repo_id / b.name / "README.md").read_text() for b in spec.branches}
        assert len(texts) == 1


def test_table_rows_match_branches(hub: tuple[Path, dict[str, RepoSpec]]) -> None:
    root, specs = hub
    for spec in specs.values():
        if spec.card != "table":
            continue
        rows = _table((root / spec.repo_id / "main/README.md").read_text())
        assert [r["Branch"] for r in rows] == [
            f"[{b.name}](https://huggingface.co/{spec.repo_id}/tree/{b.name})"
            for b in spec.branches
            if b.in_card
        ]
        for row in rows:
            m = _LINK.match(row["Branch"])
            assert m is not None
            b = spec.branch(m.group(1))
            gs = str(b.group_size) if b.group_size else "None"
            expected = {
                "Bits": str(b.bits),
                "GS": gs,
                "Act Order": "Yes" if b.act_order else "No",
                "Damp %": f"{b.damp_percent:g}",
                "Seq Len": str(b.seq_len),
                "ExLlama": "Yes" if b.bits == 4 and spec.arch.model_type == "llama" else "No",
                **b.card_overrides,
            }
            assert {k: row[k] for k in expected} == expected, (spec.repo_id, b.name)
            assert row["GPTQ Dataset"].startswith("[wikitext](https://huggingface.co/datasets/wikitext")
    tiny = _table((root / "TheBloke/TinyLlama-GPTQ/main/README.md").read_text())
    by_name = {_LINK.match(r["Branch"]).group(1): r for r in tiny}  # type: ignore[union-attr]
    assert "fp16" not in by_name
    assert by_name["gptq-4bit-128g-actorder_False"]["GS"] == "64"  # the card disagrees with the files
    assert by_name["gptq-4bit-128g-actorder_False"]["Damp %"] == "0.1"
    assert by_name["gptq-3bit--1g-actorder_True"]["GS"] == "None"
    assert by_name["main"]["ExLlama"] == "Yes" and by_name["gptq-8bit-32g-actorder_True"]["ExLlama"] == "No"


def test_table_sizes_are_branch_bytes(hub: tuple[Path, dict[str, RepoSpec]]) -> None:
    root, specs = hub
    for spec in specs.values():
        if spec.card != "table":
            continue
        for row in _table((root / spec.repo_id / "main/README.md").read_text()):
            name = _LINK.match(row["Branch"]).group(1)  # type: ignore[union-attr]
            d = root / spec.repo_id / name
            total = sum(p.stat().st_size for p in d.iterdir() if p.name != "README.md")
            assert total == branch_file_bytes(d) > 0
            assert row["Size"] == f"{total / 1e9:.2f} GB"
    assert format_size_gb(40_660_000_000) == "40.66 GB"
    assert format_size_gb(35_334_999_999) == "35.33 GB"


def test_prompt_template_sections(hub: tuple[Path, dict[str, RepoSpec]]) -> None:
    root, specs = hub
    for spec in specs.values():
        text = (root / spec.repo_id / "main/README.md").read_text()
        assert spec.prompt_template is not None
        heading = (
            "## Prompt template" if spec.card == "no_table" else f"## Prompt template: {spec.prompt_template}"
        )
        block = f"{heading}\n```\n{PROMPT_TEMPLATES[spec.prompt_template]}\n```\n"
        assert block in text, spec.repo_id
        if spec.card == "table":
            assert text.startswith("---\n") and "\nquantized_by: TheBloke\n" in text
            assert f"\nmodel_type: {spec.arch.model_type}\n" in text
            assert f"# {spec.name.removesuffix('-GPTQ')} - GPTQ\n" in text
            assert "This repo contains GPTQ model files for " in text
    vicuna = (root / "TheBloke/TinyLlama-GPTQ/main/README.md").read_text()
    assert "questions. USER: {prompt} ASSISTANT:\n```" in vicuna
    falcon = (root / "TheBloke/TinyFalcon-GPTQ/main/README.md").read_text()
    assert "## Prompt template: None\n```\n{prompt}\n```" in falcon


def test_front_matter_is_yaml(hub: tuple[Path, dict[str, RepoSpec]]) -> None:
    yaml = pytest.importorskip("yaml")
    root, _ = hub
    text = (root / "TheBloke/TinyChatML-GPTQ/main/README.md").read_text()
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["quantized_by"] == "TheBloke" and meta["model_type"] == "llama"
    assert meta["prompt_template"] == PROMPT_TEMPLATES["ChatML"] + "\n"


def test_no_table_card(hub: tuple[Path, dict[str, RepoSpec]]) -> None:
    root, _ = hub
    d = root / "TheBloke/NoTable-GPTQ/main"
    weight = "NoTable-GPTQ-4bit-128g.no-act-order.safetensors"
    assert (d / weight).exists() and not (d / "model.safetensors").exists()
    text = (d / "README.md").read_text()
    assert "| Branch |" not in text and "\n|" not in text
    assert "## Provided files\n" in text and weight in text
    assert "### Human: {prompt}\n### Assistant:" in text


def test_card_none_and_custom_repo(tmp_path: Path) -> None:
    spec = RepoSpec(
        "Org/Plain",
        Arch(tie_embeddings=True),
        (BranchSpec("main", 4, 32, card_overrides={"Bits": "8"}),),
        card="none",
    )
    write_repo(tmp_path, spec)
    d = tmp_path / "Org/Plain/main"
    assert not (d / "README.md").exists()
    assert "lm_head.weight" not in _header_shapes(d / "model.safetensors")
    with pytest.raises(ValueError):
        write_repo(
            tmp_path, RepoSpec("Org/Bad", Arch(), (BranchSpec("main", 4, card_overrides={"Nope": "x"}),))
        )


def test_eight_branch_repo(tmp_path: Path) -> None:
    spec = eight_branch_repo("Bench/Eight-GPTQ")
    assert [b.name for b in spec.branches] == [
        "gptq-4bit-32g-actorder_True",
        "gptq-4bit-64g-actorder_True",
        "gptq-4bit-128g-actorder_True",
        "gptq-3bit-128g-actorder_True",
        "gptq-3bit-128g-actorder_False",
        "gptq-3bit--1g-actorder_True",
        "gptq-3bit-64g-actorder_True",
        "main",
    ]
    write_repo(tmp_path, spec)
    rows = _table((tmp_path / "Bench/Eight-GPTQ/main/README.md").read_text())
    assert len(rows) == 8
    for b in spec.branches:
        assert b.bits is not None
        path = tmp_path / "Bench/Eight-GPTQ" / b.name / "model.safetensors"
        assert _header_shapes(path) == gptq_tensor_shapes(spec.arch, b.bits, b.group_size)


def test_deterministic_and_fast(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    build_fixture_hub(tmp_path / "a")
    elapsed = time.perf_counter() - t0
    build_fixture_hub(tmp_path / "b")
    build_fixture_hub(tmp_path / "b")  # rebuilding over an existing tree replaces it
    a, b = _all_files(tmp_path / "a"), _all_files(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a)
    assert {k.split("/")[1] for k in a} == {s.name for s in fixture_repos()}
    assert elapsed < 2.0
