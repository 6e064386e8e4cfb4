"""The context budget: oldest unpinned turns drop, pinned ones and the newest never do, nothing is cut."""

from __future__ import annotations

import pytest

from app.chat.conversation import Conversation, Message, TokenCounter, group_turns, plan_context
from app.chat.templates import BUILTIN_TEMPLATES, Role
from app.errors import ContextBudgetError, MessageTooLongError
from tests.chat_fakes import CharTokenizer


def _conversation(*contents: str) -> Conversation:
    conv = Conversation()
    for i, text in enumerate(contents):
        conv.add(Role.USER if i % 2 == 0 else Role.ASSISTANT, text)
    return conv


def _cost(message: Message) -> int:
    return len(message.content)


def _plan(
    conv: Conversation, budget: int, fixed: int = 0, extra_drop: int = 0
) -> tuple[list[str], list[str]]:
    plan = plan_context(
        conv.messages,
        _cost,
        fixed_tokens=fixed,
        context_length=budget + 10,
        reserve=10,
        extra_drop=extra_drop,
    )
    by_id = {m.id: m.content for m in conv.messages}
    return [by_id[i] for i in plan.kept], [by_id[i] for i in plan.dropped]


def test_turns_group_a_user_message_with_its_replies() -> None:
    conv = _conversation("u1", "a1", "u2", "a2", "u3")
    assert [[m.content for m in t] for t in group_turns(conv.messages)] == [
        ["u1", "a1"],
        ["u2", "a2"],
        ["u3"],
    ]


def test_everything_fits() -> None:
    conv = _conversation("u1", "a1", "u2")
    assert _plan(conv, budget=100) == (["u1", "a1", "u2"], [])


def test_oldest_whole_turns_drop_first() -> None:
    conv = _conversation("u1xxxxxxxx", "a1xxxxxxxx", "u2xxxxxxxx", "a2xxxxxxxx", "u3xxxxxxxx")
    kept, dropped = _plan(conv, budget=35)
    assert kept == ["u2xxxxxxxx", "a2xxxxxxxx", "u3xxxxxxxx"]
    assert dropped == ["u1xxxxxxxx", "a1xxxxxxxx"]  # the user message and its reply go together


def test_history_stays_contiguous_a_small_older_turn_does_not_jump_the_queue() -> None:
    conv = _conversation("u1", "a1", "u2" + "x" * 30, "a2", "u3")
    kept, dropped = _plan(conv, budget=20)
    assert kept == ["u3"]
    assert dropped == ["u1", "a1", "u2" + "x" * 30, "a2"]


def test_pinned_turns_stay_and_younger_unpinned_ones_drop_instead() -> None:
    conv = _conversation("u1 pinned", "a1", "u2xxxxxxxx", "a2xxxxxxxx", "u3xxxxxxxx", "a3", "u4")
    conv.set_pinned(conv.messages[0].id)
    kept, dropped = _plan(conv, budget=30)
    assert kept == ["u1 pinned", "a1", "u3xxxxxxxx", "a3", "u4"]
    assert dropped == ["u2xxxxxxxx", "a2xxxxxxxx"]


def test_pinning_a_reply_keeps_its_whole_turn() -> None:
    conv = _conversation("u1", "a1 pinned", "u2" * 20, "a2", "u3")
    conv.set_pinned(conv.messages[1].id)
    kept, _ = _plan(conv, budget=20)
    assert kept == ["u1", "a1 pinned", "u3"]


def test_the_system_prompt_and_template_cost_is_always_paid() -> None:
    conv = _conversation("u1xxxxxxxx", "a1xxxxxxxx", "u2xxxxxxxx")
    assert _plan(conv, budget=30, fixed=0)[1] == []
    assert _plan(conv, budget=30, fixed=15)[1] == ["u1xxxxxxxx", "a1xxxxxxxx"]


def test_one_message_larger_than_the_budget_is_a_clear_error() -> None:
    conv = _conversation("u1", "a1", "x" * 50)
    with pytest.raises(MessageTooLongError) as err:
        _plan(conv, budget=40, fixed=5)
    assert "50 tokens" in err.value.message and "35" in err.value.message
    assert "Shorten it" in err.value.hint


def test_a_huge_old_unpinned_message_simply_drops() -> None:
    conv = _conversation("x" * 500, "a1", "u2")
    assert _plan(conv, budget=20) == (["u2"], ["x" * 500, "a1"])


def test_a_huge_pinned_message_is_an_error() -> None:
    conv = _conversation("x" * 500, "a1", "u2")
    conv.set_pinned(conv.messages[0].id)
    with pytest.raises(MessageTooLongError):
        _plan(conv, budget=20)


def test_pinned_plus_newest_over_budget_says_so() -> None:
    conv = _conversation("p" * 15, "a1", "n" * 15)
    conv.set_pinned(conv.messages[0].id)
    with pytest.raises(ContextBudgetError, match="pinned") as err:
        _plan(conv, budget=25)
    assert not isinstance(err.value, MessageTooLongError)
    assert "Unpin" in err.value.hint


def test_extra_drop_removes_the_oldest_kept_turns() -> None:
    conv = _conversation("u1", "a1", "u2", "a2", "u3")
    assert _plan(conv, budget=100, extra_drop=1) == (["u2", "a2", "u3"], ["u1", "a1"])
    with pytest.raises(ContextBudgetError):
        _plan(conv, budget=100, extra_drop=3)


def test_empty_conversation() -> None:
    plan = plan_context([], _cost, fixed_tokens=3, context_length=100, reserve=10)
    assert plan.kept == plan.dropped == () and plan.prompt_tokens == 3 and plan.budget == 90


def test_edit_starts_a_new_branch_and_keeps_every_later_message_on_the_old_one() -> None:
    conv = _conversation("u1", "a1", "u2", "a2")
    old_first = conv.messages[0]
    edited = conv.edit(old_first.id, "u1 edited")
    assert [m.content for m in conv.messages] == ["u1 edited"]
    assert conv.versions(edited.id) == [old_first, edited]
    conv.select_version(old_first.id)
    assert [m.content for m in conv.messages] == ["u1", "a1", "u2", "a2"]


def test_token_counts_are_cached_per_message_until_the_content_changes() -> None:
    tok = CharTokenizer()
    counter = TokenCounter(tok, BUILTIN_TEMPLATES["Vicuna"])
    message = Message(Role.USER, "hello there")
    assert counter.content_tokens(message) == 11 == message.token_count
    calls = tok.encode_calls
    assert counter.content_tokens(message) == 11
    assert tok.encode_calls == calls
    message.content = "hi"
    assert counter.content_tokens(message) == 2
    assert tok.encode_calls == calls + 1


@pytest.mark.parametrize("name", list(BUILTIN_TEMPLATES))
def test_template_overhead_matches_the_rendered_prompt(name: str) -> None:
    # For the per-character tokenizer the estimate is exact: every template's overhead is measured right.
    from app.chat.templates import ChatMessage, encode_segments

    spec = BUILTIN_TEMPLATES[name]
    tok = CharTokenizer()
    counter = TokenCounter(tok, spec)
    messages = [
        Message(Role.USER, "Hello!"),
        Message(Role.ASSISTANT, "Hi!"),
        Message(Role.USER, "How are you?"),
    ]
    system = Message(Role.SYSTEM, "Be brief.")
    estimate = counter.message_tokens(system) + sum(counter.message_tokens(m) for m in messages)
    estimate += counter.generation_overhead()
    exact = len(
        encode_segments(
            spec.render([ChatMessage(Role.SYSTEM, "Be brief."), *(m.as_chat() for m in messages)]), tok
        )
    )
    # Raw's separator sits between messages (one fewer than messages): the estimate may be one over.
    assert exact <= estimate <= exact + 1
