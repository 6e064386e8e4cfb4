"""How many threads a model gets beside the window."""

from __future__ import annotations

import pytest

from app.backends.cpu_threads import threads_beside_a_window, usable_cpus


@pytest.mark.parametrize(("cpus", "expected"), [(1, 1), (2, 1), (8, 7), (64, 63)])
def test_every_cpu_but_one_and_at_least_one(cpus: int, expected: int) -> None:
    assert threads_beside_a_window(cpus) == expected


@pytest.mark.parametrize(
    ("configured", "expected"), [("4", 4), ("1", 1), (" 2 ", 2), ("0", 7), ("x", 7), ("", 7)]
)
def test_omp_num_threads_set_by_the_user_wins(configured: str, expected: int) -> None:
    assert threads_beside_a_window(8, configured) == expected


def test_usable_cpus_is_at_least_one() -> None:
    assert usable_cpus() >= 1
