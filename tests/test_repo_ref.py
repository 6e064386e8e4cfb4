"""Parsing what users type or paste as a repo."""

from __future__ import annotations

import pytest

from app.catalog.repo_ref import RepoRef, parse_repo_ref
from app.errors import InvalidRepoIdError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("TheBloke/Llama-2-70B-GPTQ", RepoRef("TheBloke/Llama-2-70B-GPTQ")),
        ("  TheBloke/Llama-2-70B-GPTQ  ", RepoRef("TheBloke/Llama-2-70B-GPTQ")),
        (
            "TheBloke/Llama-2-70B-GPTQ:gptq-4bit-32g-actorder_True",
            RepoRef("TheBloke/Llama-2-70B-GPTQ", "gptq-4bit-32g-actorder_True"),
        ),
        (
            "https://huggingface.co/TheBloke/Llama-2-70B-GPTQ/tree/gptq-3bit--1g-actorder_True",
            RepoRef("TheBloke/Llama-2-70B-GPTQ", "gptq-3bit--1g-actorder_True"),
        ),
        ("https://huggingface.co/TheBloke/CausalLM-7B-GPTQ", RepoRef("TheBloke/CausalLM-7B-GPTQ")),
        ("huggingface.co/TheBloke/guanaco-13B-GPTQ/", RepoRef("TheBloke/guanaco-13B-GPTQ")),
        (
            "https://huggingface.co/TheBloke/guanaco-13B-GPTQ/blob/main/README.md",
            RepoRef("TheBloke/guanaco-13B-GPTQ", "main"),
        ),
    ],
)
def test_accepted_forms(text: str, expected: RepoRef) -> None:
    assert parse_repo_ref(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "llama",
        "a/b/c",
        "TheBloke/../etc",
        "TheBloke/name:",
        "https://example.com/TheBloke/Llama-2-70B-GPTQ",
        "https://huggingface.co/datasets/wikitext/x",
        "org/-bad",
        "org/na me",
    ],
)
def test_rejected_forms_say_what_to_type(text: str) -> None:
    with pytest.raises(InvalidRepoIdError) as info:
        parse_repo_ref(text)
    assert "org/name" in info.value.user_message
