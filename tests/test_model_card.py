"""parse_model_card: the facts real TheBloke cards state, and that no input makes it raise."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import cast

import pytest

from app.catalog.model_card import CardBranchRow, CardTemplate, ModelCard, parse_model_card

# Copies of the real cards from the shared folder, committed so every checkout tests against them.
CARDS = Path(__file__).resolve().parent / "fixtures" / "model-cards"


def _card_text(name: str) -> str:
    return (CARDS / name).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def llama_text() -> str:
    return _card_text("Llama-2-70B-GPTQ.README.md")


@pytest.fixture(scope="module")
def llama(llama_text: str) -> ModelCard:
    return parse_model_card(llama_text)


@pytest.fixture(scope="module")
def causal_text() -> str:
    return _card_text("CausalLM-7B-GPTQ.page.txt")


@pytest.fixture(scope="module")
def causal(causal_text: str) -> ModelCard:
    return parse_model_card(causal_text)


@pytest.fixture(scope="module")
def guanaco_text() -> str:
    return _card_text("guanaco-13B-GPTQ.page.txt")


@pytest.fixture(scope="module")
def guanaco(guanaco_text: str) -> ModelCard:
    return parse_model_card(guanaco_text)


# --------------------------------------------------------------------------------------------------
# Llama-2-70B-GPTQ README.md (markdown)
# --------------------------------------------------------------------------------------------------


def test_llama_rows_in_table_order(llama: ModelCard) -> None:
    assert [r.branch for r in llama.rows] == [
        "gptq-4bit-32g-actorder_True",
        "gptq-4bit-64g-actorder_True",
        "gptq-4bit-128g-actorder_True",
        "gptq-3bit-128g-actorder_True",
        "gptq-3bit-128g-actorder_False",
        "gptq-3bit--1g-actorder_True",
        "gptq-3bit-64g-actorder_True",
        "main",
    ]


def test_llama_row_values(llama: ModelCard) -> None:
    assert llama.row("gptq-4bit-32g-actorder_True") == CardBranchRow(
        branch="gptq-4bit-32g-actorder_True",
        bits=4,
        group_size=32,
        act_order=True,
        damp_percent=0.01,
        dataset="wikitext",
        seq_len=4096,
        size_bytes=40_660_000_000,
        exllama=True,
        description=(
            "4-bit, with Act Order and group size 32g. Gives highest possible inference quality, "
            "with maximum VRAM usage."
        ),
    )
    no_group = llama.row("gptq-3bit--1g-actorder_True")
    assert no_group is not None
    assert (no_group.bits, no_group.group_size, no_group.exllama) == (3, None, False)
    assert no_group.size_bytes == 26_780_000_000
    act_false = llama.row("gptq-3bit-128g-actorder_False")
    assert act_false is not None and act_false.act_order is False
    main = llama.row("main")
    assert main is not None
    assert (main.bits, main.group_size, main.act_order, main.exllama) == (4, None, True, True)
    assert main.size_bytes == 35_330_000_000
    assert llama.row("no-such-branch") is None


def test_llama_template_title_description_metadata(llama: ModelCard) -> None:
    assert llama.template == CardTemplate(label="None", name="Raw", text="{prompt}")
    assert llama.title == "Llama 2 70B - GPTQ"
    assert llama.description is not None
    assert "GPTQ model files" in llama.description
    assert "](" not in llama.description  # markdown links are reduced to their text
    assert len(llama.description) <= 500
    assert llama.metadata["model_type"] == "llama"
    assert llama.metadata["quantized_by"] == "TheBloke"


def test_llama_front_matter_template_used_when_body_has_none(llama_text: str) -> None:
    body_without_template = llama_text.replace("## Prompt template: None", "## Prompt")
    card = parse_model_card(body_without_template)
    # Front matter says prompt_template: '{prompt}\n' -> recognised as the raw template.
    assert card.template == CardTemplate(label="Raw", name="Raw", text="{prompt}")


def test_llama_with_windows_line_endings(llama_text: str, llama: ModelCard) -> None:
    assert parse_model_card(llama_text.replace("\n", "\r\n")) == llama


# --------------------------------------------------------------------------------------------------
# CausalLM-7B-GPTQ as a web page renders it
# --------------------------------------------------------------------------------------------------


def test_causal_page_rows(causal: ModelCard) -> None:
    assert [r.branch for r in causal.rows] == [
        "main",
        "gptq-4bit-32g-actorder_True",
        "gptq-8bit--1g-actorder_True",
        "gptq-8bit-128g-actorder_True",
        "gptq-8bit-32g-actorder_True",
        "gptq-4bit-64g-actorder_True",
    ]
    main = causal.row("main")
    assert main == CardBranchRow(
        branch="main",
        bits=4,
        group_size=128,
        act_order=True,
        damp_percent=0.1,
        dataset="wikitext",
        seq_len=8192,
        size_bytes=5_860_000_000,
        exllama=True,
        description=(
            "4-bit, with Act Order and group size 128g. Uses even less VRAM than 64g, "
            "but with slightly lower accuracy."
        ),
    )
    eight_bit = [r for r in causal.rows if r.bits == 8]
    assert len(eight_bit) == 3
    assert all(r.exllama is False for r in eight_bit)
    no_group = causal.row("gptq-8bit--1g-actorder_True")
    assert no_group is not None
    assert no_group.group_size is None
    assert no_group.size_bytes == 8_980_000_000


def test_causal_page_template_title_description(causal: ModelCard) -> None:
    # The page dropped the code block, so only the label survives.
    assert causal.template == CardTemplate(label="ChatML", name="ChatML", text=None)
    assert causal.title == "CausalLM 7B - GPTQ"
    assert causal.description == "This repo contains GPTQ model files for CausalLM's CausalLM 7B."
    assert causal.metadata == {}


# --------------------------------------------------------------------------------------------------
# guanaco-13B-GPTQ as a web page renders it (older card: no branch table, unlabelled template)
# --------------------------------------------------------------------------------------------------


def test_guanaco_page(guanaco: ModelCard) -> None:
    assert guanaco.rows == ()
    assert guanaco.template is not None
    assert guanaco.template.name == "Guanaco"
    assert guanaco.template.label == "Guanaco"  # recognised from the text, the card names nothing
    assert guanaco.template.text == "### Human: prompt\n### Assistant:"
    assert guanaco.description is not None
    assert guanaco.description.startswith("These files are GPTQ 4bit model files")


# --------------------------------------------------------------------------------------------------
# Synthetic markdown cards
# --------------------------------------------------------------------------------------------------

_SYNTHETIC = """\
---
model_type: mistral
---
# Synthetic 7B - GPTQ

Some intro paragraph that is long enough to count as a sentence of prose for sure.

| Model | Bits | Size |
| ----- | ---- | ---- |
| main | 4 | 1 GB |

| Name | Value |
|---|---|
| Branch | looks like a header but is a cell |

| Size | **Branch** | Extra | Group size | Bits | Act-Order | Sequence length | ExLlama Compatibility |
|:-----|:----------:|------:|------------|------|-----------|-----------------|-----------------------|
| 4.1 GiB | [`gptq-4bit-32g`](https://x.invalid/b) | whatever | 32g | 4 | True | 4,096 | ✓ |
| 512 MB | **main** | x | -1 | 8 | false | n/a | No |
| big | short-row | y |
| 7 | extra-cells | z | 128 | 4 | Yes | 2048 | Yes | surplus | cells |

## Prompt template: Vicuna

```
A chat between a curious user and an artificial intelligence assistant.

USER: {prompt} ASSISTANT:
```
"""


def test_synthetic_reordered_table_with_extra_and_missing_columns() -> None:
    # The first two tables have no "Branch" header and are skipped; columns of the third are
    # found by header name whatever their order, extras ignored, missing ones left unset.
    card = parse_model_card(_SYNTHETIC)
    assert card.title == "Synthetic 7B - GPTQ"
    assert card.metadata == {"model_type": "mistral"}
    assert [r.branch for r in card.rows] == ["gptq-4bit-32g", "main", "short-row", "extra-cells"]
    first = card.rows[0]
    assert first == CardBranchRow(
        branch="gptq-4bit-32g",
        bits=4,
        group_size=32,
        act_order=True,
        seq_len=4096,
        size_bytes=4_402_341_478,  # 4.1 * 2**30, rounded
        exllama=True,
    )
    main = card.rows[1]
    assert (main.bits, main.group_size, main.act_order, main.seq_len, main.exllama) == (
        8,
        None,
        False,
        None,
        False,
    )
    assert main.size_bytes == 512_000_000
    assert main.damp_percent is None and main.dataset is None and main.description == ""
    short = card.rows[2]
    assert short == CardBranchRow(branch="short-row")  # "big" is no size; missing cells stay unset
    extra = card.rows[3]
    assert (extra.size_bytes, extra.group_size, extra.bits, extra.seq_len) == (None, 128, 4, 2048)
    assert card.template == CardTemplate(
        label="Vicuna",
        name="Vicuna",
        text=(
            "A chat between a curious user and an artificial intelligence assistant.\n\n"
            "USER: {prompt} ASSISTANT:"
        ),
    )


def test_table_without_branch_column_is_ignored() -> None:
    text = "# T\n\n| Model | Bits | Size |\n|---|---|---|\n| main | 4 | 3 GB |\n"
    assert parse_model_card(text).rows == ()


def test_table_inside_code_block_is_ignored() -> None:
    text = "```\n| Branch | Bits |\n|---|---|\n| main | 4 |\n```\n"
    assert parse_model_card(text).rows == ()


@pytest.mark.parametrize(
    ("cell", "size"),
    [
        ("40.66 GB", 40_660_000_000),
        ("5.86GB", 5_860_000_000),
        ("1 TB", 10**12),
        ("750 KB", 750_000),
        ("1.5 GiB", 1_610_612_736),
        ("2 MiB", 2 * 2**20),
        ("123 B", 123),
        ("1,024 MB", 1_024_000_000),
        ("40.66", None),
        ("lots", None),
        ("", None),
        ("4 GBs", None),
    ],
)
def test_size_cells(cell: str, size: int | None) -> None:
    card = parse_model_card(f"| Branch | Size |\n|---|---|\n| main | {cell} |\n")
    assert card.rows == (CardBranchRow(branch="main", size_bytes=size),)


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        (("4", "None", "Yes", "0.01"), (4, None, True, 0.01)),
        (("3", "-1", "No", "0.1"), (3, None, False, 0.1)),
        (("8", "", "True", "1%"), (8, None, True, 1.0)),
        (("4-bit", "128", "False", "abc"), (4, 128, False, None)),
        (("four", "sixty", "maybe", "nan"), (None, None, None, None)),
        (("99999999999999999999", "1e9", "", "1e999"), (None, None, None, None)),
    ],
)
def test_value_cells(cells: tuple[str, str, str, str], expected: tuple[object, ...]) -> None:
    text = "| Branch | Bits | GS | desc_act | Damp % |\n|---|---|---|---|---|\n| b | {} | {} | {} | {} |\n"
    row = parse_model_card(text.format(*cells)).rows[0]
    assert (row.bits, row.group_size, row.act_order, row.damp_percent) == expected


# --------------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "name"),
    [
        ("None", "Raw"),
        ("Vicuna", "Vicuna"),
        ("Vicuna-Short", "Vicuna"),
        ("Alpaca", "Alpaca"),
        ("Alpaca-CoT", "Alpaca-CoT"),
        ("Guanaco", "Guanaco"),
        ("ChatML", "ChatML"),
        ("Llama-2-Chat", "Llama-2-chat"),
        ("Unknown", None),
        ("Orca-Hashes", None),
    ],
)
def test_template_label_names(label: str, name: str | None) -> None:
    markdown = parse_model_card(f"# X\n\n### Prompt template: {label}\n\n```\n{{prompt}}\n```\n")
    assert markdown.template == CardTemplate(label=label, name=name, text="{prompt}")
    page = parse_model_card(f"X\n\nPrompt template: {label}\n\nThe license is wtfpl and that is that.\n")
    assert page.template == CardTemplate(label=label, name=name, text=None)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant", "ChatML"),
        ("[INST] <<SYS>>\nBe nice.\n<</SYS>>\n{prompt} [/INST]", "Llama-2-chat"),
        ("Below is an instruction.\n\n### Instruction:\n{prompt}\n\n### Response:", "Alpaca"),
        ("### Instruction:\n{prompt}\n\n### Response: Let's think step by step.", "Alpaca-CoT"),
        ("### Human: {prompt}\n### Assistant:", "Guanaco"),
        ("A chat.\nUSER: {prompt}\nASSISTANT:", "Vicuna"),
        ("{prompt}", "Raw"),
        ("<s>Something else {prompt}", None),
    ],
)
def test_unlabelled_template_is_recognised_from_its_text(text: str, name: str | None) -> None:
    markdown = parse_model_card(f"# X\n\n## Prompt template\n\n```\n{text}\n```\n")
    assert markdown.template == CardTemplate(label=name or "", name=name, text=text)
    page = parse_model_card(f"X\n\nPrompt template\n\n{text.replace(chr(10) * 2, chr(10))}\n\nNext part\n")
    assert page.template is not None and page.template.name == name


def test_label_wins_over_text_and_front_matter() -> None:
    text = "---\nprompt_template: 'USER: {prompt} ASSISTANT:'\n---\n## Prompt template: ChatML\n"
    assert parse_model_card(text).template == CardTemplate(
        label="ChatML", name="ChatML", text="USER: {prompt} ASSISTANT:"
    )


def test_no_template_anywhere() -> None:
    assert parse_model_card("# Title\n\nJust words about a model, nothing else at all.\n").template is None


# --------------------------------------------------------------------------------------------------
# Front matter and page tables
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "---\nkey: [unclosed\n---\n# Title\n",  # invalid YAML
        "---\n- a list\n---\n# Title\n",  # not a mapping
        "---\n\n---\n# Title\n",  # empty
        "---\nkey: value\n# Title\n",  # never closed: a horizontal rule, not front matter
    ],
)
def test_bad_front_matter_gives_empty_metadata(text: str) -> None:
    card = parse_model_card(text)
    assert card.metadata == {}
    assert card.title == "Title"


def test_page_table_dataset_with_spaces_and_stop_at_first_other_line() -> None:
    text = (
        "Branch Bits GS Act Order Damp % GPTQ Dataset Seq Len Size ExLlama Desc\n"
        "main 4 128 Yes 0.1 Evol Instruct Code 4096 7.26 GB Yes 4-bit, with Act Order.\n"
        "gptq-8bit--1g-actorder_True 8 None No 0.01 c4 2048 13.36 GB No\n"
        "How to download, including from branches\n"
        "other 4 32 Yes 0.1 wikitext 4096 1.00 GB Yes after the table, not read\n"
    )
    card = parse_model_card(text)
    assert [r.branch for r in card.rows] == ["main", "gptq-8bit--1g-actorder_True"]
    assert card.rows[0].dataset == "Evol Instruct Code"
    assert card.rows[0].description == "4-bit, with Act Order."
    assert card.rows[1] == CardBranchRow(
        branch="gptq-8bit--1g-actorder_True",
        bits=8,
        group_size=None,
        act_order=False,
        damp_percent=0.01,
        dataset="c4",
        seq_len=2048,
        size_bytes=13_360_000_000,
        exllama=False,
    )


def test_long_description_is_shortened() -> None:
    card = parse_model_card("# T\n\n## Description\n\n" + "word " * 400 + "\n")
    assert card.description is not None
    assert len(card.description) <= 500
    assert card.description.endswith("…")


# --------------------------------------------------------------------------------------------------
# Never raises
# --------------------------------------------------------------------------------------------------


def _assert_well_formed(card: ModelCard) -> None:
    assert isinstance(card, ModelCard)
    assert isinstance(card.metadata, dict)
    assert card.title is None or isinstance(card.title, str)
    assert card.description is None or len(card.description) <= 500
    for row in card.rows:
        assert isinstance(row, CardBranchRow) and row.branch
        assert row.bits is None or isinstance(row.bits, int)
        assert row.size_bytes is None or isinstance(row.size_bytes, int)
        assert isinstance(row.description, str)
    if card.template is not None:
        assert isinstance(card.template.label, str)


_TOKENS = [
    "|",
    " | ",
    "---",
    "|---|---|",
    "```",
    "~~~",
    "# ",
    "## ",
    "\n",
    "\n\n",
    "[",
    "](",
    ")",
    "**",
    "_",
    "`",
    "Branch",
    "Bits",
    "GS",
    "Size",
    "Prompt template",
    "Prompt template: ",
    "Description",
    "{prompt}",
    "### Human:",
    "<|im_start|>",
    "4",
    "None",
    "-1",
    "40.66 GB",
    "Yes",
    "\x00",
    "\ufeff",
    "\r",
    "é",
    "\ud800",
    "🦙",
    "<!--",
    "-->",
    "key: [",
]


def _random_inputs(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    inputs: list[str] = []
    for _ in range(count):
        kind = rng.randrange(3)
        if kind == 0:  # raw binary garbage
            inputs.append(rng.randbytes(rng.randrange(0, 2000)).decode("latin-1"))
        elif kind == 1:  # markdown-ish token soup
            inputs.append("".join(rng.choice(_TOKENS) for _ in range(rng.randrange(0, 300))))
        else:  # front matter opener followed by soup
            inputs.append("---\n" + "".join(rng.choice(_TOKENS) for _ in range(rng.randrange(0, 100))))
    return inputs


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "\n\n\n",
        "---",
        "---\n",
        "---\n---",
        "|",
        "| Branch |",
        "| Branch |\n|---|",
        "```",
        "#",
        "\x00" * 10,
    ],
)
def test_degenerate_inputs(text: str) -> None:
    card = parse_model_card(text)
    _assert_well_formed(card)
    assert card.rows == ()


def test_empty_string_gives_empty_card() -> None:
    assert parse_model_card("") == ModelCard()


def test_random_inputs_never_raise() -> None:
    for text in _random_inputs(seed=20231122, count=600):
        _assert_well_formed(parse_model_card(text))


def test_mangled_real_cards_never_raise(llama_text: str, causal_text: str, guanaco_text: str) -> None:
    rng = random.Random(7)
    for source in (llama_text, causal_text, guanaco_text):
        lines = source.split("\n")
        for _ in range(60):
            mangled = list(lines)
            for _ in range(rng.randrange(1, 20)):
                action = rng.randrange(4)
                position = rng.randrange(len(mangled))
                if action == 0:
                    del mangled[position]
                elif action == 1:
                    mangled.insert(position, rng.choice(lines))
                elif action == 2:  # shuffle the cells of a line: reordered / broken table columns
                    cells = mangled[position].split("|")
                    rng.shuffle(cells)
                    mangled[position] = "|".join(cells)
                else:
                    mangled[position] = mangled[position][: rng.randrange(len(mangled[position]) + 1)]
            text = "\n".join(mangled)
            _assert_well_formed(parse_model_card(text[: rng.randrange(len(text) + 1)]))
            _assert_well_formed(parse_model_card(text))


def test_wrong_types_never_raise() -> None:
    assert parse_model_card(cast(str, None)) == ModelCard()
    assert parse_model_card(cast(str, 42)) == ModelCard()
    from_bytes = parse_model_card(cast(str, b"# Title\n\n| Branch | Bits |\n|--|--|\n| main | 4 |\n\xff"))
    assert from_bytes.title == "Title"
    assert from_bytes.rows == (CardBranchRow(branch="main", bits=4),)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 3_000_000,
        "**a" * 1_000_000,
        "# a\n" * 200_000,
        "Description\n" * 200_000,
        "```\n" * 300_000,
        "x" * 5_000_000,
        " " * 3_000_000 + "#",
        "---\n" + "[" * 50_000 + "\n---\n",
        "| a | b |\n|---|---|\n" + "| x | y |\n" * 100_000,
        "Branch Bits GS Act Order Damp % GPTQ Dataset Seq Len Size ExLlama Desc\n"
        + ("main 4 128 Yes 0.1 " + "1 1 " * 900 + "\n") * 500,
    ],
    ids=[
        "brackets",
        "stars",
        "headings",
        "descriptions",
        "fences",
        "long-line",
        "spaces",
        "deep-yaml",
        "pipes",
        "rows",
    ],
)
def test_huge_inputs_are_fast(text: str) -> None:
    start = time.perf_counter()
    _assert_well_formed(parse_model_card(text))
    assert time.perf_counter() - start < 10
