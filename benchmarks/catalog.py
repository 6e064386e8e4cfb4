"""Benchmark: catalog fetch of an 8-branch repo over a 100 ms-latency Hub, and cached reopen time.

Targets (issue 2): cold fetch wall time <= 5 x the per-request latency; reopening from the cache
< 50 ms. Run: ``.venv/bin/python benchmarks/catalog.py``. Prints the figures and PASS/FAIL per target.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.catalog.hub_client import HubClient  # noqa: E402
from app.catalog.repo_ref import RepoRef  # noqa: E402
from app.catalog.service import Catalog  # noqa: E402
from app.catalog.table import evaluate  # noqa: E402
from app.catalog.vram import CacheType  # noqa: E402
from app.hardware import detect_hardware  # noqa: E402
from tests.fixtures import eight_branch_repo, write_repo  # noqa: E402
from tests.hub_emulator import Faults, HubEmulator  # noqa: E402

LATENCY_S = 0.100
REPO = "TheBloke/Bench-Eight-GPTQ"
RUNS = 5


def main() -> int:
    """Run both measurements and print PASS/FAIL; exit 1 if a target is missed."""
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
    os.environ.pop("HF_TOKEN", None)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "hub"
        write_repo(root, eight_branch_repo(REPO))
        with HubEmulator(root) as hub:
            os.environ["HF_ENDPOINT"] = hub.endpoint
            hub.faults = Faults(latency_s=LATENCY_S)
            hardware = detect_hardware()
            cold: list[float] = []
            requests = 0
            for run in range(RUNS):
                os.environ["QUANTDESK_HOME"] = str(Path(tmp) / f"home-{run}")  # an empty cache each run
                hub.requests.clear()
                start = time.perf_counter()
                catalog = Catalog(client_factory=lambda: HubClient(token=None)).fetch(RepoRef(REPO))
                evaluate(catalog.branches, 4096, CacheType.FP16, hardware)
                cold.append(time.perf_counter() - start)
                requests = len(hub.requests)
                assert len(catalog.branches) == 8, "the benchmark repo must list 8 branches"
            reopen: list[float] = []
            for _ in range(20):
                start = time.perf_counter()
                cached = Catalog().cached(RepoRef(REPO))
                assert cached is not None
                evaluate(cached.branches, 4096, CacheType.FP16, hardware)
                reopen.append(time.perf_counter() - start)

    cold_median = statistics.median(cold)
    ratio = cold_median / LATENCY_S
    reopen_ms = statistics.median(reopen) * 1000
    ok_cold, ok_reopen = ratio <= 5, reopen_ms < 50
    print(
        f"repo: 8 branches, {requests} requests per cold fetch, latency {LATENCY_S * 1000:.0f} ms per request"
    )
    print(
        f"cold fetch (median of {RUNS}): {cold_median * 1000:.0f} ms = {ratio:.2f} x latency "
        f"(target <= 5.00)  {'PASS' if ok_cold else 'FAIL'}"
    )
    print(
        f"cached reopen (median of 20): {reopen_ms:.1f} ms (target < 50 ms)  "
        f"{'PASS' if ok_reopen else 'FAIL'}"
    )
    return 0 if ok_cold and ok_reopen else 1


if __name__ == "__main__":
    sys.exit(main())
