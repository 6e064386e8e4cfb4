"""The chat session over a scripted model: streaming, stop strings across chunks, budget, edit/regenerate."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.backends.base import Sampling, StopReason
from app.chat.conversation import Message
from app.chat.detection import TemplateChoice, TemplateSource, detect_template
from app.chat.engine import ChatSession, ChatSettings, ReplyEnd
from app.chat.jinja_template import JinjaTemplate
from app.chat.templates import BUILTIN_TEMPLATES, ChatMessage, Role, encode_segments
from app.errors import ChatError, ContextBudgetError, MessageTooLongError
from tests.chat_fakes import BOS_ID, EOS_ID, ScriptedModel


def _choice(name: str) -> TemplateChoice:
    return detect_template(chat_override=name)


def _session(
    name: str = "Guanaco", replies: list[list[str]] | None = None, context: int = 4096, **settings_kw: object
) -> tuple[ChatSession, ScriptedModel]:
    model = ScriptedModel(replies=list(replies or []), context_length=context)
    settings = ChatSettings(**settings_kw)  # type: ignore[arg-type]
    return ChatSession(model, _choice(name), settings=settings), model


def _run(chunks: object) -> tuple[str, ReplyEnd]:
    text, end = "", None
    for item in chunks:  # type: ignore[attr-defined]
        if isinstance(item, ReplyEnd):
            end = item
        else:
            text += item
    assert end is not None
    return text, end


def test_send_streams_the_reply_and_keeps_both_messages() -> None:
    session, model = _session(replies=[[" Hi", " there", "!"]])
    text, end = _run(session.send("Hello!"))
    assert text == "Hi there!"  # the reply's leading space after "### Assistant:" is formatting
    assert end.message.content == "Hi there!" and end.message.complete
    assert end.stats.stop_reason is StopReason.EOS
    assert [(m.role, m.content) for m in session.conversation.messages] == [
        (Role.USER, "Hello!"),
        (Role.ASSISTANT, "Hi there!"),
    ]
    assert model.tokenizer.spell(model.prompts[0]) == "### Human: Hello!\n### Assistant:"


def test_the_second_prompt_contains_the_first_turn_exactly_as_the_template_renders_it() -> None:
    session, model = _session("Llama-2-chat", replies=[[" Paris."], [" Rome."]], system_prompt="Be brief.")
    _run(session.send("Capital of France?"))
    _run(session.send("And Italy?"))
    first_turn = BUILTIN_TEMPLATES["Llama-2-chat"].render(
        [
            ChatMessage(Role.SYSTEM, "Be brief."),
            ChatMessage(Role.USER, "Capital of France?"),
            ChatMessage(Role.ASSISTANT, "Paris."),
        ],
        add_generation_prompt=False,
    )
    first_ids = encode_segments(first_turn, model.tokenizer)
    assert model.prompts[1][: len(first_ids)] == first_ids
    assert model.prompts[1][: len(model.prompts[0])] == model.prompts[0]
    assert model.tokenizer.spell(model.prompts[1]) == (
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nCapital of France? [/INST] Paris. </s>"
        "<s>[INST] And Italy? [/INST]"
    )


def test_preview_is_exactly_what_the_model_receives() -> None:
    session, model = _session("Vicuna", replies=[["Fine."]], add_bos=True)
    preview = session.preview_prompt("How are you?")
    assert preview.text.startswith("<s>A chat between")
    assert preview.text.endswith("USER: How are you? ASSISTANT:")
    assert (preview.template, preview.template_source) == ("Vicuna", str(TemplateSource.CHAT))
    assert session.conversation.messages == []  # previewing sends nothing
    _run(session.send("How are you?"))
    assert list(preview.token_ids) == model.prompts[0]
    assert preview.token_count == len(model.prompts[0])


def test_bos_is_prepended_once_for_table_templates_only() -> None:
    session, model = _session("Llama-2-chat", replies=[["ok"]], add_bos=True)
    _run(session.send("hi"))
    assert model.prompts[0][:2] != [BOS_ID, BOS_ID] and model.prompts[0][0] == BOS_ID
    jinja = TemplateChoice(
        JinjaTemplate("{% for m in messages %}{{ m['content'] }}{% endfor %}"), TemplateSource.MODEL, "x"
    )
    model2 = ScriptedModel(replies=[["ok"]])
    _run(ChatSession(model2, jinja, settings=ChatSettings(add_bos=True)).send("hi"))
    assert BOS_ID not in model2.prompts[0]  # a Jinja template places its own BOS


def test_stop_string_split_across_chunks_is_never_shown_and_cancels_the_backend() -> None:
    session, model = _session(
        "Alpaca", replies=[[" Fine", ", thanks.\n", "\n### In", "struction: more", " never"]]
    )
    text, end = _run(session.send("How are you?"))
    assert text == "Fine, thanks."
    assert end.message.content == "Fine, thanks."
    assert end.stats.stop_reason is StopReason.STOP_STRING and end.stats.stop_string == "\n\n### Instruction:"
    assert end.stats.new_tokens == 4  # the scripted backend saw cancel and stopped
    assert model.stops[0] == ("\n\n### Instruction:", "\n\n### Response:")


def test_extra_stop_strings_apply() -> None:
    session, _ = _session("ChatML", replies=[["Hi!", " END", " more"]], extra_stop_strings=("END",))
    text, end = _run(session.send("x"))
    assert text == "Hi! " and end.message.content == "Hi!"
    assert session.stop_strings() == ("<|im_end|>", "END")


# Stop sets to stream through, by template. Guanaco's "###" also occurs inside its "\n### Human:" one
# character later, which app/stop_strings.py does not resolve the same way for every chunking (see
# test_overlapping_stop_strings_cut_at_the_earliest_start_for_any_chunking).
STOP_SETS = {
    "Alpaca": ("\n\n### Instruction:", "\n\n### Response:"),
    "ChatML": ("<|im_end|>",),
    "Guanaco": ("\n### Human:", "###"),
}
ALPHABETS = {"Alpaca": "ab #\nIR:", "ChatML": "ab<|>im_end", "Guanaco": "ab #\nHumn:"}


def _expected(stream: str, stops: tuple[str, ...]) -> str:
    cut = min((i for i in (stream.find(s) for s in stops) if i >= 0), default=len(stream))
    return stream[:cut]


def _stream_through(template: str, stream: str, cuts: list[int]) -> tuple[str, ReplyEnd]:
    points = sorted(set(c for c in cuts if 0 < c < len(stream)))
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    session, _ = _session(template, replies=[chunks])
    return _run(session.send("q"))


def _check_every_split(template: str, stream: str) -> None:
    expected = _expected(stream, STOP_SETS[template])
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            text, end = _stream_through(template, stream, [i, j])
            assert text == expected, (i, j)
            assert end.stats.stop_reason is StopReason.STOP_STRING


@pytest.mark.parametrize(
    ("template", "stream"),
    [
        ("Alpaca", "Sure.\n\n## not yet\n\n### Resp\n\n### Instruction: hidden"),
        ("ChatML", "Hi <|im_end <|im_end|> hidden"),
        ("Guanaco", "Sure.\n## not yet #\n## x ### hidden"),
    ],
)
def test_every_two_and_three_way_split_of_a_stream_with_a_stop_string(template: str, stream: str) -> None:
    _check_every_split(template, stream)


def test_overlapping_stop_strings_cut_at_the_earliest_start_for_any_chunking() -> None:
    _check_every_split("Guanaco", "Fine, thanks.\n### Human: hidden")


def _property(template: str, text: str, cuts: list[int]) -> None:
    stops = STOP_SETS[template]
    stream = "x" + text  # a non-blank start: the leading-whitespace trim is tested elsewhere
    shown, end = _stream_through(template, stream, cuts)
    expected = _expected(stream, stops)
    assert shown == expected
    assert not any(stop in shown for stop in stops)
    assert end.message.content == expected.rstrip()
    assert (end.stats.stop_reason is StopReason.STOP_STRING) == any(stop in stream for stop in stops)


_cuts = st.lists(st.integers(min_value=0, max_value=41), max_size=12)


@settings(max_examples=250, deadline=None)
@given(text=st.text(alphabet=ALPHABETS["Alpaca"], max_size=40), cuts=_cuts)
def test_stop_strings_never_leak_for_any_chunking_alpaca(text: str, cuts: list[int]) -> None:
    _property("Alpaca", text, cuts)


@settings(max_examples=250, deadline=None)
@given(text=st.text(alphabet=ALPHABETS["ChatML"], max_size=40), cuts=_cuts)
def test_stop_strings_never_leak_for_any_chunking_chatml(text: str, cuts: list[int]) -> None:
    _property("ChatML", text, cuts)


@settings(max_examples=250, deadline=None)
@given(text=st.text(alphabet=ALPHABETS["Guanaco"], max_size=40), cuts=_cuts)
def test_no_stop_string_is_ever_shown_for_any_chunking_guanaco(text: str, cuts: list[int]) -> None:
    # The invariant that holds today even for overlapping stops: nothing shown contains a stop string,
    # what is shown is a prefix of the stream, and it ends no later than the stop that completes first.
    stops = STOP_SETS["Guanaco"]
    stream = "x" + text
    shown, end = _stream_through("Guanaco", stream, cuts)
    assert stream.startswith(shown)
    assert not any(stop in shown for stop in stops)
    earliest = _expected(stream, stops)
    assert len(earliest) <= len(shown) <= len(earliest) + 1
    assert (end.stats.stop_reason is StopReason.STOP_STRING) == any(stop in stream for stop in stops)


def test_stop_from_another_thread_keeps_the_partial_reply() -> None:
    session, model = _session(replies=[[f"w{i} " for i in range(200)]])
    model.chunk_delay = 0.002
    seen: list[str] = []
    stream = session.send("talk")
    for item in stream:
        if isinstance(item, ReplyEnd):
            end = item
            break
        seen.append(item)
        if len(seen) == 5:
            threading.Thread(target=session.stop).start()
    assert end.stats.stop_reason is StopReason.CANCELLED
    assert end.message.content == "".join(seen).strip()
    assert 5 <= len(seen) < 200
    assert session.conversation.messages[-1] is end.message and end.message.stop_reason == "cancelled"


def test_a_consumer_walking_away_keeps_the_partial_reply() -> None:
    session, _ = _session(replies=[["one ", "two ", "three"]])
    stream = session.send("count")
    assert next(stream) == "one "
    stream.close()  # type: ignore[attr-defined]
    reply = session.conversation.messages[-1]
    assert (reply.content, reply.complete, reply.stop_reason) == ("one", True, "cancelled")
    _run(session.send("again"))  # the session is usable again


def test_a_backend_error_keeps_the_partial_reply_and_raises() -> None:
    class Broken(ScriptedModel):
        def generate(self, prompt, sampling, stop, cancel):  # type: ignore[no-untyped-def]
            yield "partial"
            raise RuntimeError("GPU fell off")

    model = Broken()
    session = ChatSession(model, _choice("ChatML"))
    with pytest.raises(RuntimeError):
        _run(session.send("x"))
    reply = session.conversation.messages[-1]
    assert (reply.content, reply.stop_reason) == ("partial", "error")


def test_regenerate_adds_a_version_of_the_last_reply_with_the_same_prompt_and_keeps_the_old() -> None:
    session, model = _session(replies=[["first"], ["second"]])
    _run(session.send("q"))
    first = session.conversation.messages[-1]
    _, end = _run(session.regenerate())
    assert end.message.content == "second"
    assert [m.content for m in session.conversation.messages] == ["q", "second"]
    assert model.prompts[0] == model.prompts[1]
    assert session.conversation.versions(end.message.id) == [first, end.message]
    assert session.conversation.version_position(end.message.id) == (2, 2)
    session.select_version(first.id)
    assert [m.content for m in session.conversation.messages] == ["q", "first"]


def test_continue_extends_the_last_reply_from_where_it_stopped() -> None:
    session, model = _session(replies=[["Once upon"], [" a time."]], sampling=Sampling(max_new_tokens=1))
    _, end = _run(session.send("story"))
    assert end.stats.stop_reason is StopReason.EOS
    text, end = _run(session.continue_reply())
    assert text == " a time."
    assert end.message.content == "Once upon a time."
    assert len(session.conversation.messages) == 2
    assert model.tokenizer.spell(model.prompts[1]) == "### Human: story\n### Assistant: Once upon"


def test_edit_branches_off_and_reply_answers_the_new_text_while_the_old_turns_stay() -> None:
    session, model = _session(replies=[["a1"], ["a2"], ["a1'"]])
    _run(session.send("u1"))
    _run(session.send("u2"))
    first = session.conversation.messages[0]
    edited = session.edit(first.id, "u1 edited")
    assert edited.parent_id is None and session.conversation.version_position(edited.id) == (2, 2)
    _run(session.reply())
    assert [m.content for m in session.conversation.messages] == ["u1 edited", "a1'"]
    assert model.tokenizer.spell(model.prompts[-1]) == "### Human: u1 edited\n### Assistant:"
    session.select_version(first.id)
    assert [m.content for m in session.conversation.messages] == ["u1", "a1", "u2", "a2"]


def test_actions_that_need_a_state_say_so() -> None:
    session, _ = _session()
    for action in (session.regenerate, session.continue_reply, session.reply):
        with pytest.raises(ChatError):
            action()
    with pytest.raises(ChatError):
        session.edit("nope", "x")


def test_a_second_send_while_streaming_is_refused() -> None:
    session, _ = _session(replies=[["a", "b"]])
    stream = session.send("x")
    next(stream)
    with pytest.raises(ChatError, match="still streaming"):
        session.send("y")
    _run(stream)


def test_over_budget_the_oldest_turns_drop_and_the_engine_says_which() -> None:
    # Guanaco costs 11 + len(text) per user message, 16 + len(text) per reply, 14 for the opened turn.
    session, model = _session(replies=[["r" * 20]] * 6, context=200, sampling=Sampling(max_new_tokens=40))
    ends = [_run(session.send(f"question {i} " + "x" * 20))[1] for i in range(6)]
    assert ends[0].plan.dropped == ()
    last = ends[-1].plan
    assert last.truncated and last.prompt_tokens <= last.budget == 160
    dropped = [m for m in session.conversation.messages if m.id in set(last.dropped)]
    assert dropped and dropped[0].content.startswith("question 0")
    assert len(model.prompts[-1]) <= 160
    spelled = model.tokenizer.spell(model.prompts[-1])
    assert "question 0" not in spelled and "question 5" in spelled
    assert spelled.startswith("### Human: question")  # whole turns only, never a cut message
    preview = session.preview_prompt()  # ends in a reply: previews a continuation
    assert set(preview.plan.dropped) >= set(last.dropped)


def test_pinned_turn_survives_truncation_in_the_real_prompt() -> None:
    session, model = _session(replies=[["ok"]] * 6, context=200, sampling=Sampling(max_new_tokens=40))
    _run(session.send("REMEMBER: the code is 42"))
    session.set_pinned(session.conversation.messages[0].id)
    for i in range(5):
        _run(session.send(f"filler {i} " + "x" * 30))
    spelled = model.tokenizer.spell(model.prompts[-1])
    assert spelled.startswith("### Human: REMEMBER: the code is 42\n### Assistant: ok\n")
    assert "filler 0" not in spelled and "filler 4" in spelled


def test_a_message_larger_than_the_budget_is_refused_and_not_kept() -> None:
    session, model = _session(context=100, sampling=Sampling(max_new_tokens=20))
    with pytest.raises(MessageTooLongError):
        session.send("x" * 200)
    assert session.conversation.messages == [] and model.prompts == []


def test_a_long_system_prompt_that_leaves_no_room_is_an_error() -> None:
    session, _ = _session(context=100, sampling=Sampling(max_new_tokens=20), system_prompt="s" * 90)
    with pytest.raises(ContextBudgetError):
        session.send("hi")


def test_reply_length_is_capped_by_the_room_left_and_the_reserve_by_half_the_context() -> None:
    session, model = _session(context=100, sampling=Sampling(max_new_tokens=1000))
    assert session.reserve() == 50
    _run(session.send("hello"))
    prompt_len = len(model.prompts[0])
    assert model.samplings[0].max_new_tokens == 100 - prompt_len


def test_a_long_conversation_costs_the_same_per_turn_as_a_short_one() -> None:
    session, model = _session(
        replies=[["fine thanks"]] * 120, context=400, sampling=Sampling(max_new_tokens=50)
    )
    per_turn: list[int] = []
    for i in range(120):
        before = model.tokenizer.encoded_chars
        _run(session.send(f"message number {i:03d} " + "y" * 30))
        per_turn.append(model.tokenizer.encoded_chars - before)
    # Only the new message, the reply and the (bounded) prompt are tokenized: no growth with history.
    assert max(per_turn[100:]) <= max(per_turn[10:20]) + 5
    assert max(per_turn) < 1200


def test_streaming_reply_is_written_to_the_store_as_it_grows() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.synced: list[list[str]] = []
            self.updates: list[tuple[str, bool]] = []

        def sync(self, conversation: object) -> None:
            self.synced.append([m.content for m in conversation.messages])  # type: ignore[attr-defined]

        def update_message(self, message: Message) -> None:
            self.updates.append((message.content, message.complete))

    store = Recorder()
    model = ScriptedModel(replies=[[f"{i} " for i in range(10)]])
    session = ChatSession(model, _choice("ChatML"), store=store, flush_every_chunks=3, flush_every_seconds=60)
    _run(session.send("count"))
    assert store.synced[-1] == ["count", ""]  # the reply row exists (empty) before the first chunk
    assert store.updates[:3] == [("0 1 2 ", False), ("0 1 2 3 4 5 ", False), ("0 1 2 3 4 5 6 7 8 ", False)]
    assert store.updates[-1] == ("0 1 2 3 4 5 6 7 8 9", True)


def test_time_based_flush() -> None:
    class Recorder:
        updates = 0

        def sync(self, conversation: object) -> None:
            pass

        def update_message(self, message: Message) -> None:
            Recorder.updates += 1

    model = ScriptedModel(replies=[["a", "b", "c"]], chunk_delay=0.03)
    session = ChatSession(
        model, _choice("ChatML"), store=Recorder(), flush_every_chunks=1000, flush_every_seconds=0.01
    )
    started = time.monotonic()
    _run(session.send("x"))
    assert Recorder.updates >= 3 and time.monotonic() - started < 5


def test_switching_template_changes_the_prompt() -> None:
    session, model = _session("Guanaco", replies=[["a"], ["b"]])
    _run(session.send("q1"))
    session.set_template(_choice("ChatML"))
    _run(session.send("q2"))
    assert model.tokenizer.spell(model.prompts[1]).startswith("<|im_start|>user\nq1<|im_end|>")


def test_system_prompt_default_explicit_and_none() -> None:
    assert _session("Vicuna")[0].system_text() is not None  # the template's default
    assert _session("Vicuna", system_prompt="")[0].system_text() is None
    assert _session("Vicuna", system_prompt="Hi")[0].system_text() == "Hi"
    assert _session("Guanaco")[0].system_text() is None


def test_reset_starts_an_empty_conversation() -> None:
    session, _ = _session(replies=[["a"]])
    _run(session.send("q"))
    old = session.conversation
    new = session.reset()
    assert new is session.conversation and new.messages == [] and new.id != old.id


def test_eos_token_id_is_an_id_in_vicuna_history() -> None:
    session, model = _session("Vicuna", replies=[["Hi!"], ["ok"]], system_prompt="")
    _run(session.send("Hello!"))
    _run(session.send("How are you?"))
    assert model.prompts[1].count(EOS_ID) == 1
    assert (
        model.tokenizer.spell(model.prompts[1])
        == "USER: Hello! ASSISTANT: Hi!</s>USER: How are you? ASSISTANT:"
    )
