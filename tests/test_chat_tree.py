"""A conversation is a tree: versions, branches, the active path, explicit deletes, the planner on it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.chat.conversation import Conversation, Message, plan_context
from app.chat.templates import Role


def _chat(*contents: str) -> Conversation:
    conv = Conversation()
    for i, text in enumerate(contents):
        conv.add(Role.USER if i % 2 == 0 else Role.ASSISTANT, text)
    return conv


def _texts(messages: list[Message]) -> list[str]:
    return [m.content for m in messages]


def test_add_appends_to_the_active_path_and_links_parents() -> None:
    conv = _chat("u1", "a1", "u2")
    u1, a1, u2 = conv.active_path()
    assert (u1.parent_id, a1.parent_id, u2.parent_id) == (None, u1.id, a1.id)
    assert conv.messages == conv.active_path() == conv.all_messages()
    assert conv.title == "u1"


def test_edit_makes_a_sibling_version_and_the_old_branch_stays_whole() -> None:
    conv = _chat("u1", "a1", "u2", "a2")
    u1, a1, u2, a2 = conv.active_path()
    new_u2 = conv.edit(u2.id, "u2 edited")
    assert new_u2.parent_id == a1.id and new_u2.role is Role.USER
    assert _texts(conv.active_path()) == ["u1", "a1", "u2 edited"]
    assert conv.versions(u2.id) == [u2, new_u2]  # oldest first
    assert conv.version_position(new_u2.id) == (2, 2) and conv.version_position(u2.id) == (1, 2)
    assert [m.id for m in conv.all_messages()] == [u1.id, a1.id, u2.id, a2.id, new_u2.id]
    assert conv.get(a2.id) is a2 and a2.parent_id == u2.id


def test_edit_with_the_same_text_changes_nothing() -> None:
    conv = _chat("u1", "a1")
    u1 = conv.active_path()[0]
    assert conv.edit(u1.id, "u1") is u1
    assert len(conv.all_messages()) == 2


def test_switching_version_switches_the_whole_path_below() -> None:
    conv = _chat("u1", "a1", "u2", "a2", "u3")
    u1 = conv.active_path()[0]
    edited = conv.edit(u1.id, "u1b")
    conv.add(Role.ASSISTANT, "a1b")
    assert _texts(conv.active_path()) == ["u1b", "a1b"]
    conv.select_version(u1.id)
    assert _texts(conv.active_path()) == ["u1", "a1", "u2", "a2", "u3"]
    conv.select_version(edited.id)
    assert _texts(conv.active_path()) == ["u1b", "a1b"]


def test_the_path_below_remembers_its_own_last_active_child() -> None:
    conv = _chat("u1", "a1", "u2", "a2")
    _, _, u2, a2 = conv.active_path()
    a2b = conv.add_child(u2.id, Role.ASSISTANT, "a2b")  # a second reply
    conv.select_version(a2.id)  # the user went back to the first reply
    u1b = conv.edit(conv.active_path()[0].id, "u1b")
    conv.select_version(conv.versions(u1b.id)[0].id)
    assert _texts(conv.active_path()) == ["u1", "a1", "u2", "a2"]  # not a2b: the choice is kept
    assert a2b in conv.versions(a2.id)


def test_selecting_a_message_deep_in_another_branch_puts_it_on_the_path() -> None:
    conv = _chat("u1", "a1", "u2", "a2")
    a2 = conv.active_path()[3]
    conv.edit(conv.active_path()[0].id, "u1b")
    conv.select_version(a2.id)
    assert _texts(conv.active_path()) == ["u1", "a1", "u2", "a2"]


def test_add_after_switching_continues_the_selected_branch() -> None:
    conv = _chat("u1", "a1")
    u1 = conv.active_path()[0]
    conv.edit(u1.id, "u1b")
    conv.select_version(u1.id)
    conv.add(Role.USER, "u2")
    assert _texts(conv.active_path()) == ["u1", "a1", "u2"]


def test_delete_message_removes_only_that_message_and_lifts_what_followed() -> None:
    conv = _chat("u1", "a1", "u2", "a2")
    _u1, a1, u2, a2 = conv.active_path()
    deleted = conv.delete_message(u2.id)
    assert deleted is u2 and u2.id not in conv
    assert _texts(conv.active_path()) == ["u1", "a1", "a2"] and a2.parent_id == a1.id


def test_delete_message_of_the_active_version_shows_a_neighbour() -> None:
    conv = _chat("u1", "a1")
    u1, a1 = conv.active_path()
    a1b = conv.add_child(u1.id, Role.ASSISTANT, "a1b")
    a1c = conv.add_child(u1.id, Role.ASSISTANT, "a1c")
    conv.select_version(a1b.id)
    conv.delete_message(a1b.id)
    assert conv.active_path()[-1] is a1  # the older neighbour
    assert conv.versions(a1.id) == [a1, a1c]


def test_delete_message_keeps_the_active_version_when_another_one_is_deleted() -> None:
    conv = _chat("u1", "a1", "u2")
    u1, a1, _u2 = conv.active_path()
    u1b = conv.edit(u1.id, "u1b")
    conv.select_version(u1.id)
    conv.delete_message(u1b.id)
    assert _texts(conv.active_path()) == ["u1", "a1", "u2"]
    # Deleting a non-active version that has children: they join its siblings, the shown path stays.
    a1b = conv.add_child(u1.id, Role.ASSISTANT, "a1b")
    conv.add(Role.USER, "u2b")
    conv.select_version(a1.id)
    conv.delete_message(a1b.id)
    assert _texts(conv.active_path()) == ["u1", "a1", "u2"]
    assert _texts(conv.versions(a1.id)) == ["a1", "u2b"]


def test_delete_branch_removes_the_message_and_everything_below_it_only() -> None:
    conv = _chat("u1", "a1", "u2", "a2")
    _u1, _a1, u2, _a2 = conv.active_path()
    u2b = conv.edit(u2.id, "u2b")
    a2b = conv.add(Role.ASSISTANT, "a2b")
    removed = conv.delete_branch(u2b.id)
    assert removed == [u2b, a2b]
    assert _texts(conv.active_path()) == ["u1", "a1", "u2", "a2"]
    assert conv.version_position(u2.id) == (1, 1)
    assert len(conv.all_messages()) == 4


def test_deleting_the_whole_tree_leaves_an_empty_conversation() -> None:
    conv = _chat("u1", "a1")
    conv.delete_branch(conv.active_path()[0].id)
    assert conv.active_path() == [] and conv.all_messages() == [] and conv.last() is None


def test_pending_changes_name_what_changed_since_the_last_save() -> None:
    conv = _chat("u1", "a1", "u2", "a2")
    conv.mark_saved()
    _u1, _a1, u2, a2 = conv.active_path()
    assert conv.pending_changes().messages == () and conv.pending_changes().removed == ()
    a2b = conv.add_child(u2.id, Role.ASSISTANT, "a2b")
    changed = {m.id for m in conv.pending_changes().messages}
    assert changed == {a2b.id, a2.id}  # a2's row changes too: it is no longer the active version
    conv.mark_saved()
    conv.delete_branch(a2.id)
    assert conv.pending_changes().removed == (a2.id,)


def test_restore_rebuilds_the_tree_and_never_drops_an_orphan() -> None:
    conv = _chat("u1", "a1", "u2")
    u1, a1, u2 = conv.active_path()
    a1b = conv.add_child(u1.id, Role.ASSISTANT, "a1b")
    conv.select_version(a1.id)
    copy = Conversation()
    orphan = Message(Role.USER, "orphan", parent_id="missing")
    copy.restore([*conv.all_messages(), orphan], [u1.id, a1.id, u2.id])
    assert _texts(copy.active_path()) == ["u1", "a1", "u2"]
    assert copy.versions(a1b.id) == [a1, a1b]
    assert orphan.parent_id is None and orphan in copy.versions(u1.id)


def test_the_planner_sees_only_the_active_path() -> None:
    conv = _chat("u1" + "x" * 8, "a1" + "x" * 8, "u2" + "x" * 8)
    u1 = conv.active_path()[0]
    conv.add_child(u1.id, Role.ASSISTANT, "a1 other branch" + "y" * 500)  # would never fit
    conv.select_version(conv.versions(conv.active_path()[1].id)[0].id)
    path = conv.active_path()
    plan = plan_context(path, lambda m: len(m.content), fixed_tokens=0, context_length=40, reserve=5)
    assert plan.kept == tuple(m.id for m in path) and plan.dropped == ()
    # On a longer branch, older turns of that branch drop, never messages of another branch.
    conv.add(Role.ASSISTANT, "a2" + "x" * 8)
    conv.add(Role.USER, "u3" + "x" * 8)
    path = conv.active_path()
    plan = plan_context(path, lambda m: len(m.content), fixed_tokens=0, context_length=35, reserve=5)
    assert plan.dropped == (path[0].id, path[1].id)
    assert set(plan.kept) | set(plan.dropped) == {m.id for m in path}


_ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["add", "edit", "reply", "select", "pin", "delete message", "delete branch"]),
        st.integers(0, 50),
    ),
    max_size=40,
)


def _subtree(conv: Conversation, message_id: str) -> set[str]:
    ids = {message_id}
    for child in conv.children(message_id):
        ids |= _subtree(conv, child.id)
    return ids


@settings(max_examples=200, deadline=None)
@given(_ACTIONS)
def test_only_a_delete_removes_messages_exactly_what_it_names_and_the_path_is_always_a_chain(
    actions: list[tuple[str, int]],
) -> None:
    conv = Conversation()
    seen: dict[str, str] = {}
    for action, n in actions:
        everything = conv.all_messages()
        target = everything[n % len(everything)] if everything else None
        expected_gone: set[str] = set()
        if action == "add" or target is None:
            conv.add(Role.USER if n % 2 else Role.ASSISTANT, f"m{n}")
        elif action == "edit":
            conv.edit(target.id, target.content + "'")
        elif action == "reply":
            conv.add_child(target.id, Role.ASSISTANT, f"r{n}")
        elif action == "select":
            conv.select_version(target.id)
            assert target in conv.active_path()
        elif action == "pin":
            conv.set_pinned(target.id, not target.pinned)
        elif action == "delete message":
            expected_gone = {target.id}
            shown = [m.id for m in conv.active_path()]
            conv.delete_message(target.id)
            if target.id not in shown:  # deleting what is not shown leaves the shown path alone
                assert [m.id for m in conv.active_path()] == shown
        else:
            expected_gone = _subtree(conv, target.id)
            conv.delete_branch(target.id)
        for gone in expected_gone:
            del seen[gone]
        for message in conv.all_messages():
            seen.setdefault(message.id, message.content)
        assert {m.id for m in conv.all_messages()} == set(seen)  # nothing else lost
        assert all(seen[m.id] == m.content for m in conv.all_messages())  # nothing rewritten
        assert set(conv.pending_changes().removed) >= expected_gone
        path = conv.active_path()
        assert [m.parent_id for m in path] == [None, *(m.id for m in path[:-1])][: len(path)]
        assert not conv.children(path[-1].id if path else None)  # the path runs to a leaf
        assert bool(path) == bool(conv.all_messages())
        for message in conv.all_messages():
            n_, count = conv.version_position(message.id)
            assert 1 <= n_ <= count == len(conv.versions(message.id))
        for message in path:
            assert conv.is_active(message.id)


def test_versions_of_an_unknown_message_is_a_key_error() -> None:
    conv = _chat("u1")
    with pytest.raises(KeyError):
        conv.versions("nope")
    with pytest.raises(KeyError):
        conv.add_child("nope", Role.USER, "x")
