"""Template detection: override > model's own template > card label > name rule > Raw, source reported."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from app.catalog.model_card import CardTemplate
from app.chat.detection import NAME_RULES, TemplateSource, detect_for_model, detect_template
from app.chat.model_files import read_model_files
from app.chat.templates import BUILTIN_TEMPLATES
from app.errors import TemplateNotFoundError

OWN = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
CARD = CardTemplate(label="Vicuna", name="Vicuna")
NAME_RULE_REPO = "TheBloke/guanaco-13B-GPTQ"  # matches the Guanaco rule
PLAIN_REPO = "someone/mystery-model-GPTQ"  # matches no rule

# (chat override, profile override, own template, card, repo name) presence -> expected winner
SOURCES = ("chat", "profile", "own", "card", "name")
EXPECTED = {
    "chat": ("Alpaca", TemplateSource.CHAT),
    "profile": ("ChatML", TemplateSource.PROFILE),
    "own": ("jinja", TemplateSource.MODEL),
    "card": ("Vicuna", TemplateSource.CARD),
    "name": ("Guanaco", TemplateSource.NAME_RULE),
}


@pytest.mark.parametrize("present", list(itertools.product([False, True], repeat=len(SOURCES))))
def test_the_strongest_present_source_wins(present: tuple[bool, ...]) -> None:
    on = dict(zip(SOURCES, present, strict=True))
    choice = detect_template(
        chat_override="Alpaca" if on["chat"] else None,
        profile_override="ChatML" if on["profile"] else None,
        own_template=OWN if on["own"] else None,
        own_origin="chat_template.jinja",
        card=CARD if on["card"] else None,
        repo_name=NAME_RULE_REPO if on["name"] else PLAIN_REPO,
    )
    winner = next((s for s in SOURCES if on[s]), None)
    expected = EXPECTED[winner] if winner else ("Raw", TemplateSource.FALLBACK)
    assert (choice.name, choice.source) == expected
    assert choice.detail


def test_sources_say_what_decided() -> None:
    assert (
        detect_template(own_template=OWN, own_origin="tokenizer_config.json").detail
        == "tokenizer_config.json"
    )
    assert detect_template(card=CARD).detail == "'Prompt template: Vicuna'"
    rule = detect_template(repo_name="TheBloke/Llama-2-7B-Chat-GPTQ")
    assert rule.name == "Llama-2-chat" and "TheBloke/Llama-2-7B-Chat-GPTQ" in rule.detail
    assert detect_template(chat_override="chatml").label == "ChatML (this chat)"


def test_card_label_none_means_raw_from_the_card() -> None:
    choice = detect_template(card=CardTemplate(label="None", name="Raw"), repo_name=NAME_RULE_REPO)
    assert (choice.name, choice.source) == ("Raw", TemplateSource.CARD)


def test_an_unknown_card_label_falls_through_with_a_note() -> None:
    choice = detect_template(card=CardTemplate(label="Orca-Hashes", name=None), repo_name=NAME_RULE_REPO)
    assert (choice.name, choice.source) == ("Guanaco", TemplateSource.NAME_RULE)
    assert any("Orca-Hashes" in note for note in choice.notes)


def test_a_broken_own_template_falls_through_with_a_note() -> None:
    choice = detect_template(own_template="{% if %}", card=CARD)
    assert (choice.name, choice.source) == ("Vicuna", TemplateSource.CARD)
    assert any("not valid Jinja" in note for note in choice.notes)


def test_override_jinja_asks_for_the_models_own_template() -> None:
    choice = detect_template(profile_override="jinja", own_template=OWN, card=CARD)
    assert (choice.name, choice.source) == ("jinja", TemplateSource.PROFILE)
    with pytest.raises(TemplateNotFoundError, match="no chat template of its own"):
        detect_template(chat_override="jinja", card=CARD)


def test_an_unknown_override_is_an_error_not_a_silent_fallback() -> None:
    with pytest.raises(TemplateNotFoundError):
        detect_template(profile_override="Zephyr", own_template=OWN)


@pytest.mark.parametrize(
    ("repo", "template"),
    [
        ("TheBloke/Llama-2-13B-chat-GPTQ", "Llama-2-chat"),
        ("TheBloke/CodeLlama-7B-Instruct-GPTQ", "Llama-2-chat"),
        ("TheBloke/WizardMath-7B-V1.0-GPTQ", "Alpaca-CoT"),
        ("TheBloke/Wizard-Vicuna-13B-Uncensored-GPTQ", "Vicuna"),
        ("TheBloke/vicuna-7B-v1.5-GPTQ", "Vicuna"),
        ("TheBloke/Xwin-LM-13B-V0.1-GPTQ", "Vicuna"),
        ("TheBloke/guanaco-33B-GPTQ", "Guanaco"),
        ("TheBloke/gpt4-alpaca-lora-13B-GPTQ", "Alpaca"),
        ("TheBloke/OpenHermes-2.5-Mistral-7B-GPTQ", "ChatML"),
        ("TheBloke/CausalLM-7B-GPTQ", "ChatML"),
        ("TheBloke/Llama-2-70B-GPTQ", None),  # the base model: no rule, Raw
    ],
)
def test_name_rules(repo: str, template: str | None) -> None:
    choice = detect_template(repo_name=repo)
    if template is None:
        assert choice.source is TemplateSource.FALLBACK
    else:
        assert (choice.name, choice.source) == (template, TemplateSource.NAME_RULE)


def test_name_rules_only_name_builtin_templates() -> None:
    assert {rule.template for rule in NAME_RULES} <= set(BUILTIN_TEMPLATES)


# -- reading a model folder ---------------------------------------------------------------------------


def _folder(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "TheBloke_vicuna-7B-GPTQ"
    folder.mkdir()
    for name, text in files.items():
        (folder / name.replace("__", ".")).write_text(text)
    return folder


def test_model_folder_prefers_chat_template_jinja_over_tokenizer_config(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path,
        chat_template__jinja=OWN,
        tokenizer_config__json=json.dumps(
            {"chat_template": "other", "bos_token": "<s>", "eos_token": "</s>"}
        ),
    )
    files = read_model_files(folder)
    assert (files.own_template, files.own_template_origin) == (OWN, "chat_template.jinja")
    assert (files.bos_token, files.eos_token) == ("<s>", "</s>")
    assert detect_for_model(files).source is TemplateSource.MODEL


def test_model_folder_named_templates_in_tokenizer_config(tmp_path: Path) -> None:
    config = {"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": OWN}]}
    files = read_model_files(_folder(tmp_path, tokenizer_config__json=json.dumps(config)))
    assert (files.own_template, files.own_template_origin) == (OWN, "tokenizer_config.json")


def test_model_folder_card_then_folder_name(tmp_path: Path) -> None:
    card = (
        "# Some model\n\n## Prompt template: Alpaca\n\n"
        "```\n### Instruction:\n{prompt}\n\n### Response:\n```\n"
    )
    files = read_model_files(_folder(tmp_path, README__md=card))
    choice = detect_for_model(files)
    assert (choice.name, choice.source) == ("Alpaca", TemplateSource.CARD)
    (files.model_dir / "README.md").unlink()
    choice = detect_for_model(read_model_files(files.model_dir))
    assert (choice.name, choice.source) == ("Vicuna", TemplateSource.NAME_RULE)  # from the folder's name


def test_model_folder_metadata(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path,
        config__json=json.dumps({"max_position_embeddings": 2048}),
        generation_config__json=json.dumps({"temperature": 0.6, "top_p": 0.9}),
        tokenizer_config__json=json.dumps({"add_bos_token": True, "bos_token": {"content": "<s>"}}),
    )
    files = read_model_files(folder)
    assert files.context_length == 2048
    assert files.generation_config["temperature"] == 0.6
    assert files.add_bos_token is True and files.bos_token == "<s>"


def test_hf_cache_snapshot_gives_the_repo_and_commit(tmp_path: Path) -> None:
    snapshot = tmp_path / "hub" / "models--TheBloke--guanaco-7B-GPTQ" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    files = read_model_files(snapshot)
    assert (files.repo_id, files.commit) == ("TheBloke/guanaco-7B-GPTQ", "a" * 40)
    assert detect_for_model(files).name == "Guanaco"
