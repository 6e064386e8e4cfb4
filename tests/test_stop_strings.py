"""The streaming stop-string matcher: property tests over arbitrary texts, stop sets and chunkings."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from app.stop_strings import StopStringMatcher

# A small alphabet makes stop strings (and near-misses across chunk boundaries) occur often.
ALPHABET = "ab#\n é"
texts = st.text(alphabet=ALPHABET, max_size=40)
stop_sets = st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=5), max_size=4)


def _expected(text: str, stops: list[str]) -> tuple[str, bool]:
    """Character by character: stop at the first completion, cut at the earliest live stop's start."""
    for end in range(1, len(text) + 1):
        seen = text[:end]
        if any(s and seen.endswith(s) for s in stops):
            starts = [
                i
                for s in stops
                if s
                for i in range(max(0, end - len(s)), end)
                if s.startswith(seen[i:end]) or seen[i:end] == s
            ]
            return text[: min(starts)], True
    return text, False


@st.composite
def chunked(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = draw(texts)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in itertools.pairwise(bounds)]


def _run(stops: list[str], chunks: list[str]) -> tuple[list[str], str | None, list[str]]:
    matcher = StopStringMatcher(stops)
    out: list[str] = []
    seen = ""
    held: list[str] = []
    stop = None
    for chunk in chunks:
        fed = matcher.feed(chunk)
        seen += chunk
        out.append(fed.text)
        held.append(matcher.held)
        if fed.stop is not None:
            stop = fed.stop
            break
        # Nothing is lost or reordered: what was emitted plus what is held is exactly the input so far.
        assert "".join(out) + matcher.held == seen
    if stop is None:
        out.append(matcher.flush())
    return out, stop, held


@settings(max_examples=400, deadline=None)
@given(chunked(), stop_sets)
def test_output_is_the_text_up_to_the_first_stop_for_any_chunking(
    case: tuple[str, list[str]], stops: list[str]
) -> None:
    text, chunks = case
    out, stop, _held = _run(stops, chunks)
    expected, stopped = _expected(text, stops)
    assert "".join(out) == expected
    assert (stop is not None) == stopped
    if stop is not None:
        assert stop in text


@settings(max_examples=400, deadline=None)
@given(chunked(), stop_sets)
def test_a_stop_string_is_never_emitted(case: tuple[str, list[str]], stops: list[str]) -> None:
    _text, chunks = case
    out, _stop, _held = _run(stops, chunks)
    emitted = "".join(out)
    assert not any(s in emitted for s in stops if s)


@settings(max_examples=400, deadline=None)
@given(chunked(), stop_sets)
def test_only_a_possible_start_of_a_stop_string_is_held_back(
    case: tuple[str, list[str]], stops: list[str]
) -> None:
    _text, chunks = case
    _out, _stop, held = _run(stops, chunks)
    for h in held:
        assert h == "" or any(s.startswith(h) and len(h) < len(s) for s in stops)


def test_examples() -> None:
    m = StopStringMatcher(["\n### Human:", "###"])
    assert m.feed("Hi there\n#").text == "Hi there"
    assert m.held == "\n#"
    fed = m.feed("## Human: more")
    assert fed.text == "" and fed.stop == "###"  # completes first; the cut is where "\n###" began
    assert m.feed("anything").text == "" and m.flush() == ""

    m = StopStringMatcher(["</s>"])
    assert m.feed("a <").text == "a "
    assert m.feed("b").text == "<b"
    assert m.flush() == ""

    # Overlapping stops: "###" completes first, but "\n### Human:" had already begun at the "\n".
    for chunks in (["Fine.\n### Human: x"], ["Fine.\n#", "##", " Human"], list("Fine.\n###")):
        m = StopStringMatcher(["\n### Human:", "###"])
        shown = ""
        for c in chunks:
            fed = m.feed(c)
            shown += fed.text
            if fed.stop:
                break
        assert shown == "Fine." and fed.stop == "###"

    m = StopStringMatcher(["", "xyz"])  # empty stop strings are ignored
    assert m.feed("abc").text == "abc"
    assert m.feed("xy").text == ""
    assert m.flush() == "xy"
