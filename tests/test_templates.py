"""Golden renderings of every built-in template (shared NOTES.md), segments, Jinja templates, `render`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.chat.jinja_template import JinjaTemplate
from app.chat.templates import (
    BUILTIN_TEMPLATES,
    ChatMessage,
    Role,
    Special,
    TemplateSpec,
    encode_segments,
    get_template,
    load_user_templates,
    render_text,
)
from app.cli import main
from app.errors import ChatTemplateError, TemplateNotFoundError
from tests.chat_fakes import BOS_ID, EOS_ID, CharTokenizer

VICUNA_SYS = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
ALPACA_SYS = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)
SYS = "You are a pirate."

U, A = Role.USER, Role.ASSISTANT
ONE_TURN = [ChatMessage(U, "Hello!")]
TWO_TURNS = [ChatMessage(U, "Hello!"), ChatMessage(A, "Hi!"), ChatMessage(U, "How are you?")]
THREE_TURNS = [*TWO_TURNS, ChatMessage(A, "Fine, thanks."), ChatMessage(U, "What's new?")]

# (template, system prompt given, conversation) -> exact prompt. system=None: the template's default
# system prompt; "": explicitly none. NOTES.md's 2-turn strings are included verbatim.
GOLDEN: list[tuple[str, str | None, list[ChatMessage], str]] = [
    # Vicuna v1.1
    ("Vicuna", None, TWO_TURNS, VICUNA_SYS + " USER: Hello! ASSISTANT: Hi!</s>USER: How are you? ASSISTANT:"),
    ("Vicuna", None, ONE_TURN, VICUNA_SYS + " USER: Hello! ASSISTANT:"),
    (
        "Vicuna",
        None,
        THREE_TURNS,
        VICUNA_SYS + " USER: Hello! ASSISTANT: Hi!</s>USER: How are you? ASSISTANT: Fine, thanks.</s>"
        "USER: What's new? ASSISTANT:",
    ),
    ("Vicuna", SYS, ONE_TURN, "You are a pirate. USER: Hello! ASSISTANT:"),
    ("Vicuna", "", ONE_TURN, "USER: Hello! ASSISTANT:"),
    (
        "Vicuna",
        "",
        THREE_TURNS,
        "USER: Hello! ASSISTANT: Hi!</s>USER: How are you? ASSISTANT: Fine, thanks.</s>"
        "USER: What's new? ASSISTANT:",
    ),
    # Alpaca
    (
        "Alpaca",
        None,
        TWO_TURNS,
        ALPACA_SYS + "\n\n### Instruction:\nHello!\n\n### Response:\nHi!\n\n### Instruction:\nHow are "
        "you?\n\n### Response:\n",
    ),
    ("Alpaca", None, ONE_TURN, ALPACA_SYS + "\n\n### Instruction:\nHello!\n\n### Response:\n"),
    (
        "Alpaca",
        None,
        THREE_TURNS,
        ALPACA_SYS + "\n\n### Instruction:\nHello!\n\n### Response:\nHi!\n\n### Instruction:\nHow are you?"
        "\n\n### Response:\nFine, thanks.\n\n### Instruction:\nWhat's new?\n\n### Response:\n",
    ),
    ("Alpaca", "", ONE_TURN, "### Instruction:\nHello!\n\n### Response:\n"),
    (
        "Alpaca",
        "",
        THREE_TURNS,
        "### Instruction:\nHello!\n\n### Response:\nHi!\n\n### Instruction:\nHow are you?\n\n### Response:\n"
        "Fine, thanks.\n\n### Instruction:\nWhat's new?\n\n### Response:\n",
    ),
    # Alpaca-CoT (WizardMath): Alpaca with the response prefix "### Response: Let's think step by step."
    (
        "Alpaca-CoT",
        None,
        ONE_TURN,
        ALPACA_SYS + "\n\n### Instruction:\nHello!\n\n### Response: Let's think step by step.",
    ),
    (
        "Alpaca-CoT",
        "",
        THREE_TURNS,
        "### Instruction:\nHello!\n\n### Response: Let's think step by step. Hi!\n\n"
        "### Instruction:\nHow are you?\n\n### Response: Let's think step by step. Fine, thanks.\n\n"
        "### Instruction:\nWhat's new?"
        "\n\n### Response: Let's think step by step.",
    ),
    ("Alpaca-CoT", "", ONE_TURN, "### Instruction:\nHello!\n\n### Response: Let's think step by step."),
    (
        "Alpaca-CoT",
        None,
        THREE_TURNS,
        ALPACA_SYS + "\n\n### Instruction:\nHello!\n\n### Response: Let's think step by step. Hi!\n\n"
        "### Instruction:\nHow are you?\n\n### Response: Let's think step by step. Fine, thanks.\n\n"
        "### Instruction:\nWhat's new?\n\n### Response: Let's think step by step.",
    ),
    # Guanaco: no default system prompt; an optional system line first
    (
        "Guanaco",
        None,
        TWO_TURNS,
        "### Human: Hello!\n### Assistant: Hi!\n### Human: How are you?\n### Assistant:",
    ),
    ("Guanaco", None, ONE_TURN, "### Human: Hello!\n### Assistant:"),
    (
        "Guanaco",
        None,
        THREE_TURNS,
        "### Human: Hello!\n### Assistant: Hi!\n### Human: How are you?\n### Assistant: Fine, thanks.\n"
        "### Human: What's new?\n### Assistant:",
    ),
    ("Guanaco", SYS, ONE_TURN, "You are a pirate.\n### Human: Hello!\n### Assistant:"),
    (
        "Guanaco",
        SYS,
        THREE_TURNS,
        "You are a pirate.\n### Human: Hello!\n### Assistant: Hi!\n### Human: How are you?\n"
        "### Assistant: Fine, thanks.\n### Human: What's new?\n### Assistant:",
    ),
    # ChatML
    (
        "ChatML",
        SYS,
        TWO_TURNS,
        "<|im_start|>system\nYou are a pirate.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n"
        "<|im_start|>assistant\nHi!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n"
        "<|im_start|>assistant\n",
    ),
    (
        "ChatML",
        SYS,
        ONE_TURN,
        "<|im_start|>system\nYou are a pirate.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n"
        "<|im_start|>assistant\n",
    ),
    ("ChatML", None, ONE_TURN, "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"),
    (
        "ChatML",
        None,
        THREE_TURNS,
        "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\nHi!<|im_end|>\n<|im_start|>user\n"
        "How are you?<|im_end|>\n<|im_start|>assistant\nFine, thanks.<|im_end|>\n<|im_start|>user\n"
        "What's new?<|im_end|>\n<|im_start|>assistant\n",
    ),
    (
        "ChatML",
        SYS,
        THREE_TURNS,
        "<|im_start|>system\nYou are a pirate.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n"
        "<|im_start|>assistant\nHi!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n"
        "<|im_start|>assistant\nFine, thanks.<|im_end|>\n"
        "<|im_start|>user\nWhat's new?<|im_end|>\n<|im_start|>assistant\n",
    ),
    # Llama-2-chat: <s>/</s> are BOS/EOS ids; no default system prompt
    (
        "Llama-2-chat",
        SYS,
        TWO_TURNS,
        "<s>[INST] <<SYS>>\nYou are a pirate.\n<</SYS>>\n\nHello! [/INST] Hi! </s>"
        "<s>[INST] How are you? [/INST]",
    ),
    ("Llama-2-chat", SYS, ONE_TURN, "<s>[INST] <<SYS>>\nYou are a pirate.\n<</SYS>>\n\nHello! [/INST]"),
    ("Llama-2-chat", None, ONE_TURN, "<s>[INST] Hello! [/INST]"),
    (
        "Llama-2-chat",
        None,
        THREE_TURNS,
        "<s>[INST] Hello! [/INST] Hi! </s><s>[INST] How are you? [/INST] Fine, thanks. </s>"
        "<s>[INST] What's new? [/INST]",
    ),
    (
        "Llama-2-chat",
        SYS,
        THREE_TURNS,
        "<s>[INST] <<SYS>>\nYou are a pirate.\n<</SYS>>\n\nHello! [/INST] Hi! </s>"
        "<s>[INST] How are you? [/INST] Fine, thanks. </s><s>[INST] What's new? [/INST]",
    ),
    # Raw: plain text, no roles
    ("Raw", None, ONE_TURN, "Hello!"),
    ("Raw", None, THREE_TURNS, "Hello!\nHi!\nHow are you?\nFine, thanks.\nWhat's new?"),
    ("Raw", SYS, ONE_TURN, "You are a pirate.\nHello!"),
    ("Raw", SYS, THREE_TURNS, "You are a pirate.\nHello!\nHi!\nHow are you?\nFine, thanks.\nWhat's new?"),
]


def _with_system(name: str, system: str | None, messages: list[ChatMessage]) -> list[ChatMessage]:
    text = BUILTIN_TEMPLATES[name].default_system if system is None else system
    return ([ChatMessage(Role.SYSTEM, text)] if text else []) + messages


@pytest.mark.parametrize(("name", "system", "messages", "expected"), GOLDEN)
def test_golden_rendering(name: str, system: str | None, messages: list[ChatMessage], expected: str) -> None:
    segments = BUILTIN_TEMPLATES[name].render(_with_system(name, system, messages))
    assert render_text(segments) == expected


def test_every_builtin_template_has_goldens_with_and_without_system_and_1_and_3_turns() -> None:
    for name in BUILTIN_TEMPLATES:
        cases = [(s, len(m)) for n, s, m, _ in GOLDEN if n == name]
        assert any(s for s, _ in cases) or BUILTIN_TEMPLATES[name].default_system, (
            name
        )  # with a system prompt
        assert any(s == "" or (s is None and not BUILTIN_TEMPLATES[name].default_system) for s, _ in cases), (
            name
        )
        assert {1, 5} <= {n for _, n in cases}, name


def test_explicit_empty_system_prompt_means_none_and_the_empty_system_message_is_skipped() -> None:
    spec = BUILTIN_TEMPLATES["ChatML"]
    assert render_text(spec.render([ChatMessage(Role.SYSTEM, ""), *ONE_TURN])) == render_text(
        spec.render(ONE_TURN)
    )


def test_bos_and_eos_are_segments_and_become_token_ids() -> None:
    spec = BUILTIN_TEMPLATES["Llama-2-chat"]
    segments = spec.render([ChatMessage(Role.SYSTEM, SYS), *TWO_TURNS])
    assert segments[0] is Special.BOS
    assert [s for s in segments if isinstance(s, Special)] == [Special.BOS, Special.EOS, Special.BOS]
    assert not any("<s>" in s or "</s>" in s for s in segments if isinstance(s, str))
    tok = CharTokenizer()
    ids = encode_segments(segments, tok)
    assert [i for i in ids if i in (BOS_ID, EOS_ID)] == [BOS_ID, EOS_ID, BOS_ID]
    assert ids[0] == BOS_ID
    assert tok.spell(ids) == render_text(segments)


def test_vicuna_eos_after_a_reply_is_an_id_and_user_text_that_looks_like_eos_stays_text() -> None:
    spec = BUILTIN_TEMPLATES["Vicuna"]
    messages = [ChatMessage(U, "type </s> please"), ChatMessage(A, "Hi!"), ChatMessage(U, "ok")]
    ids = encode_segments(spec.render(messages), CharTokenizer())
    assert ids.count(EOS_ID) == 1  # only the template's, after "Hi!"
    assert CharTokenizer().spell(ids).startswith("USER: type </s> please")


def test_special_tokens_the_tokenizer_lacks_are_left_out() -> None:
    tok = CharTokenizer()
    tok.bos_token_id = None
    ids = encode_segments(BUILTIN_TEMPLATES["Llama-2-chat"].render(ONE_TURN), tok)
    assert BOS_ID not in ids
    assert tok.spell(ids) == "[INST] Hello! [/INST]"


def test_render_text_uses_the_tokenizers_spelling() -> None:
    segments = BUILTIN_TEMPLATES["Llama-2-chat"].render(ONE_TURN)
    assert render_text(segments, "<BOS>", "<EOS>") == "<BOS>[INST] Hello! [/INST]"


@pytest.mark.parametrize("name", list(BUILTIN_TEMPLATES))
def test_continue_final_leaves_the_last_reply_open(name: str) -> None:
    spec = BUILTIN_TEMPLATES[name]
    partial = [*ONE_TURN, ChatMessage(A, "Once upon")]
    text = render_text(spec.render(partial, continue_final=True))
    assert text.endswith("Once upon")
    closed = render_text(spec.render([*ONE_TURN, ChatMessage(A, "Once upon")], add_generation_prompt=False))
    assert closed.startswith(text)


def test_template_lookup_is_forgiving_and_unknown_names_list_the_known_ones() -> None:
    assert get_template("chatml").name == "ChatML"
    assert get_template("llama2_chat").name == "Llama-2-chat"
    assert get_template("vicuna_v1.1").name == "Vicuna"
    assert get_template("ALPACA-COT").name == "Alpaca-CoT"
    assert get_template("None").name == "Raw"
    with pytest.raises(TemplateNotFoundError) as err:
        get_template("Zephyr")
    assert "Vicuna" in err.value.hint


def test_template_specs_round_trip_through_json_and_user_templates_load(tmp_path: Path) -> None:
    for spec in BUILTIN_TEMPLATES.values():
        assert TemplateSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    zephyr = {
        "name": "Zephyr",
        "user_prefix": ["<|user|>\n"],
        "user_suffix": [{"special": "eos"}, "\n"],
        "assistant_prefix": ["<|assistant|>\n"],
        "assistant_suffix": [{"special": "eos"}, "\n"],
        "generation_prompt": ["<|assistant|>\n"],
        "stop_strings": ["<|user|>"],
    }
    (tmp_path / "zephyr.json").write_text(json.dumps(zephyr))
    user = load_user_templates(tmp_path)
    spec = get_template("zephyr", user)
    assert render_text(spec.render(ONE_TURN)) == "<|user|>\nHello!</s>\n<|assistant|>\n"
    assert get_template("ChatML", user) is BUILTIN_TEMPLATES["ChatML"]


def test_a_malformed_user_template_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"name": "Bad", "user_prefix": [{"special": "cls"}]}))
    with pytest.raises(ChatTemplateError, match="neither text nor a special token"):
        load_user_templates(tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ChatTemplateError, match=r"bad\.json"):
        load_user_templates(tmp_path)


# -- the model's own Jinja template -------------------------------------------------------------------

LLAMA2_JINJA = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)
CHATML_JINJA = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_jinja_template_matches_the_builtin_llama2_rendering_with_bos_eos_as_ids() -> None:
    messages = [ChatMessage(Role.SYSTEM, SYS), *TWO_TURNS]
    jinja = JinjaTemplate(LLAMA2_JINJA).render(messages)
    builtin = BUILTIN_TEMPLATES["Llama-2-chat"].render(messages)
    assert jinja == builtin
    assert [s for s in jinja if isinstance(s, Special)] == [Special.BOS, Special.EOS, Special.BOS]


def test_jinja_raise_exception_becomes_a_typed_error() -> None:
    with pytest.raises(ChatTemplateError, match="must alternate"):
        JinjaTemplate(LLAMA2_JINJA).render([ChatMessage(U, "a"), ChatMessage(U, "b")])


def test_jinja_generation_prompt_and_continue_final() -> None:
    t = JinjaTemplate(CHATML_JINJA)
    assert render_text(t.render(ONE_TURN)) == "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"
    assert (
        render_text(t.render(ONE_TURN, add_generation_prompt=False)) == "<|im_start|>user\nHello!<|im_end|>\n"
    )
    cont = render_text(t.render([*ONE_TURN, ChatMessage(A, "Once upon")], continue_final=True))
    assert cont == "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\nOnce upon"


def test_jinja_user_text_looking_like_a_special_token_is_text() -> None:
    t = JinjaTemplate("{{ bos_token }}{% for m in messages %}{{ m['content'] }}{{ eos_token }}{% endfor %}")
    segments = t.render([ChatMessage(U, "say </s> and <s>")], add_generation_prompt=False)
    assert segments == [Special.BOS, "say </s> and <s>", Special.EOS]


def test_jinja_without_bos_in_the_tokenizer_leaves_it_undefined() -> None:
    t = JinjaTemplate("{% if bos_token %}B{% endif %}{{ messages[0]['content'] }}", has_bos=False)
    assert t.render(ONE_TURN) == ["Hello!"]


def test_jinja_helpers_tojson_strftime_and_generation_tag() -> None:
    source = (
        "{{ messages | tojson }}|{{ strftime_now('%Y') | length }}|"
        "{% generation %}{{ messages[0]['content'] }}{% endgeneration %}"
    )
    text = render_text(JinjaTemplate(source).render([ChatMessage(U, "café")]))
    assert text == '[{"role": "user", "content": "café"}]|4|café'


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages.append({'role': 'user', 'content': 'x'}) }}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
def test_jinja_runs_in_an_immutable_sandbox(source: str) -> None:
    with pytest.raises(ChatTemplateError):
        JinjaTemplate(source).render(ONE_TURN)


def test_invalid_jinja_is_a_typed_error() -> None:
    with pytest.raises(ChatTemplateError, match="not valid Jinja"):
        JinjaTemplate("{% for %}")


# -- quantdesk render -------------------------------------------------------------------------------


def _messages_file(tmp_path: Path, messages: list[ChatMessage], wrap: bool = False) -> Path:
    data: object = [{"role": m.role.value, "content": m.content} for m in messages]
    if wrap:
        data = {"messages": data}
    path = tmp_path / "messages.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(("name", "system", "messages", "expected"), GOLDEN)
def test_render_cli_prints_the_golden_text(
    name: str,
    system: str | None,
    messages: list[ChatMessage],
    expected: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["render", "--template", name, "--messages", str(_messages_file(tmp_path, messages, wrap=True))]
    if system is not None:
        args += ["--system", system]
    assert main(args) == 0
    assert capsys.readouterr().out == expected


def test_render_cli_takes_the_system_prompt_from_the_file_unless_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _messages_file(tmp_path, [ChatMessage(Role.SYSTEM, "From file."), *ONE_TURN])
    assert main(["render", "--template", "Guanaco", "--messages", str(path)]) == 0
    assert capsys.readouterr().out == "From file.\n### Human: Hello!\n### Assistant:"
    assert main(["render", "--template", "Guanaco", "--system", "Flag.", "--messages", str(path)]) == 0
    assert capsys.readouterr().out == "Flag.\n### Human: Hello!\n### Assistant:"


def test_render_cli_with_a_model_folder_uses_its_template_and_token_strings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<|begin|>", "eos_token": {"content": "<|end|>"}})
    )
    (model / "chat_template.jinja").write_text(LLAMA2_JINJA)
    path = _messages_file(tmp_path, TWO_TURNS)
    assert main(["render", "--model", str(model), "--messages", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "<|begin|>[INST] Hello! [/INST] Hi! <|end|><|begin|>[INST] How are you? [/INST]"
    assert "jinja (model's own template)" in captured.err
    assert main(["render", "--model", str(model), "--template", "Llama-2-chat", "--messages", str(path)]) == 0
    assert capsys.readouterr().out.startswith("<|begin|>[INST] Hello!")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not valid JSON"),
        ('{"messages": 3}', "no message list"),
        ('[{"role": "robot", "content": "x"}]', "role 'robot'"),
        ('[{"role": "user"}]', "needs a text 'content'"),
    ],
)
def test_render_cli_reports_bad_message_files(
    content: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.json"
    path.write_text(content)
    assert main(["render", "--template", "ChatML", "--messages", str(path)]) == 1
    assert message in capsys.readouterr().err


def test_render_cli_needs_a_template_or_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--messages", str(_messages_file(tmp_path, ONE_TURN))]) == 1
    assert "--template" in capsys.readouterr().err
    assert main(["render", "--template", "Nope", "--messages", str(_messages_file(tmp_path, ONE_TURN))]) == 1
    assert "no prompt template called 'Nope'" in capsys.readouterr().err
