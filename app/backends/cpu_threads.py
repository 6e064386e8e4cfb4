"""How many CPU threads the window's chat thread gives a model's math (torch's intra-op pool).

Measured on a 2-core machine with the tiny test model: the window's own thread (the event loop, the
transcript's repaints) runs beside the model, and when the model's pool takes every core, each
repaint pre-empts one of the pool's threads and every parallel step waits for it: the reply streamed
at 0.62-0.64 x what the same model made alone. With every core but one for the model, the window keeps
a core of its own and the pool is never interrupted. The CLI has no window and keeps torch's default.

torch sets the pool size per calling thread (OpenMP), so this runs on the thread that runs the model.
``OMP_NUM_THREADS``, when the user set it, wins.
"""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """CPUs this process may run on (a container's or ``taskset``'s limit, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def threads_beside_a_window(cpus: int, configured: str | None = None) -> int:
    """Threads for the model when a window shares the machine: ``OMP_NUM_THREADS`` (``configured``) when
    it is a positive number, else every CPU but one (at least one)."""
    if configured is not None and configured.strip().isdigit() and int(configured) > 0:
        return int(configured)
    return max(1, cpus - 1)


def leave_a_core_for_the_window() -> int:
    """Size the calling thread's torch pool with :func:`threads_beside_a_window`; returns the size."""
    import torch

    threads = threads_beside_a_window(usable_cpus(), os.environ.get("OMP_NUM_THREADS"))
    torch.set_num_threads(threads)
    return threads
