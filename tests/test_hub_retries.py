"""Metadata calls to the Hub retry like file transfers, and a 429's Retry-After is honoured (issue 11.9).

Against the Hub emulator (a real HTTP server the real huggingface_hub client talks to) with injected
503s and 429s; the request log's arrival times show the waits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from app import errors
from app.catalog.hub_client import HubClient
from app.retry import BackoffPolicy, parse_retry_after
from tests.hub_emulator import Faults, HubEmulator

ROOT = Path(__file__).resolve().parent.parent
TINY = "TheBloke/TinyLlama-GPTQ"
FAST = BackoffPolicy(attempts=5, base_s=0.05, max_s=0.2, max_retry_after_s=10)


def arrivals(hub: HubEmulator, fragment: str) -> list[tuple[int, float]]:
    return [(r.status, r.time) for r in hub.requests if fragment in r.path]


def test_three_503s_on_the_refs_then_success(hub: HubEmulator) -> None:
    hub.faults = Faults(path_contains="/refs", fail_first=3, fail_status=503)
    refs = HubClient(policy=FAST).branches(TINY)
    assert "main" in [r.name for r in refs]
    assert [status for status, _ in arrivals(hub, "/refs")] == [503, 503, 503, 200]


def test_three_503s_on_a_tree_page_then_success(hub: HubEmulator) -> None:
    commit = hub.commit_of(TINY, "main")
    hub.faults = Faults(path_contains="/tree/", fail_first=3, fail_status=503)
    files = HubClient(policy=FAST).file_tree(TINY, commit, "main")
    assert any(f.path == "config.json" for f in files) and any(f.sha256 for f in files)
    assert [status for status, _ in arrivals(hub, "/tree/")][:4] == [503, 503, 503, 200]


def test_the_tree_follows_every_page(hub: HubEmulator) -> None:
    commit = hub.commit_of(TINY, "main")
    everything = HubClient().file_tree(TINY, commit, "main")
    hub.reset()
    hub.tree_page_size = 2
    try:
        paged = HubClient().file_tree(TINY, commit, "main")
    finally:
        hub.tree_page_size = 1000
    assert paged == everything and len(arrivals(hub, "/tree/")) > 1


def test_persistent_503_ends_in_a_sentence_after_the_policys_tries(hub: HubEmulator) -> None:
    hub.faults = Faults(path_contains="/refs", fail_first=1000, fail_status=503)
    with pytest.raises(errors.HubServerError) as err:
        HubClient(policy=FAST).branches(TINY)
    assert "(503)" in err.value.message and err.value.hint
    assert len(arrivals(hub, "/refs")) == FAST.attempts


def test_a_429s_retry_after_is_honoured(hub: HubEmulator) -> None:
    hub.faults = Faults(path_contains="/refs", fail_first=1, fail_status=429, retry_after="2")
    HubClient(policy=FAST).branches(TINY)  # FAST alone would retry after 0.05 s
    (first_status, first), (second_status, second) = arrivals(hub, "/refs")
    assert (first_status, second_status) == (429, 200)
    assert second - first >= 1.9


def test_a_retry_after_given_as_a_date_is_honoured(hub: HubEmulator) -> None:
    hub.faults = Faults(
        path_contains="/refs",
        fail_first=1,
        fail_status=503,
        retry_after=formatdate(time.time() + 3, usegmt=True),
    )
    HubClient(policy=FAST).branches(TINY)
    (_, first), (_, second) = arrivals(hub, "/refs")
    assert second - first >= 1.0  # an HTTP date has whole seconds: 3 s ahead is at least 2 s of waiting


def test_a_retry_after_longer_than_the_policy_gives_up_at_once_and_says_when(hub: HubEmulator) -> None:
    hub.faults = Faults(path_contains="/refs", fail_first=1000, fail_status=429, retry_after="3600")
    started = time.monotonic()
    with pytest.raises(errors.HubServerError) as err:
        HubClient(policy=FAST).branches(TINY)
    assert time.monotonic() - started < 5
    assert len(arrivals(hub, "/refs")) == 1
    assert "asks to wait 60 min" in err.value.message and "Try again in 60 min" in err.value.hint


def test_branches_command_survives_three_503s_on_the_api(hub: HubEmulator) -> None:
    # The default policy, as a user gets it: three failures on the refs cost 0.5 + 1 + 2 s of waiting.
    hub.faults = Faults(path_contains="/api/", fail_first=3, fail_status=503)
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "branches", TINY],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{TINY}: 8 branches")
    assert sum(r.status == 503 for r in hub.requests) == 3


@pytest.mark.parametrize(
    ("header", "expected"),
    [("120", 120.0), (" 0 ", 0.0), ("-5", 0.0), ("soon", None), ("", None), (None, None)],
)
def test_parse_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0


def test_policy_is_bounded() -> None:
    policy = BackoffPolicy(attempts=5, base_s=0.5, max_s=8, max_retry_after_s=60)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, None]
    assert policy.delay(1, retry_after=30) == 30 and policy.delay(1, retry_after=61) is None
    assert policy.delay(5, retry_after=1) is None
