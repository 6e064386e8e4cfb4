"""Download benchmarks against the local Hub emulator.

Run standalone: ``.venv/bin/python benchmarks/download.py [--size-mb 500] [--rounds 5]``.

1. Throughput: a ~500 MB repo fetched by ``quantdesk download`` and by ``hf download`` (huggingface_hub's
   CLI), alternating, each as its own process against the same emulator; target: QuantDesk's median
   throughput >= 0.95 x hf's.
2. Resume cost: the connection is cut at 60 % of the file, QuantDesk resumes; target: bytes served
   <= 1.02 x the file size.

Prints the figures and PASS/FAIL per target; exit status 0 only when both pass.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hub_emulator import Faults, HubEmulator  # noqa: E402

REPO = "bench/Big-GPTQ"
WEIGHTS = "model.safetensors"
BIN = Path(sys.executable).parent


def make_repo(root: Path, size: int) -> Path:
    """A repo with one big LFS file (random bytes, so nothing compresses) and a config."""
    branch = root / REPO / "main"
    branch.mkdir(parents=True)
    (branch / "config.json").write_text('{"model_type": "llama"}\n')
    block = os.urandom(8 * 1024 * 1024)
    with (branch / WEIGHTS).open("wb") as fh:
        left = size
        while left > 0:
            fh.write(block[: min(len(block), left)])
            left -= min(len(block), left)
    return branch / WEIGHTS


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        command, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def throughput(hub: HubEmulator, work: Path, size: int, rounds: int) -> bool:
    env = dict(
        os.environ, HF_ENDPOINT=hub.endpoint, HF_HUB_DISABLE_TELEMETRY="1", QUANTDESK_HOME=str(work / "qd")
    )
    env.pop("HF_TOKEN", None)
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
    qd_target, hf_cache = work / "qd-model", work / "hf-cache"
    qd_cmd = [str(BIN / "quantdesk"), "download", REPO, "--dir", str(qd_target)]
    hf_cmd = [str(BIN / "hf"), "download", REPO, "--cache-dir", str(hf_cache)]
    qd_times: list[float] = []
    hf_times: list[float] = []
    timed(hf_cmd, env)  # warm-up: page cache of the source file, Python bytecode of both tools
    shutil.rmtree(hf_cache)
    for i in range(rounds):
        order = [("hf", hf_cmd), ("qd", qd_cmd)] if i % 2 == 0 else [("qd", qd_cmd), ("hf", hf_cmd)]
        for name, cmd in order:
            elapsed = timed(cmd, env)
            (qd_times if name == "qd" else hf_times).append(elapsed)
            shutil.rmtree(qd_target if name == "qd" else hf_cache)
    mb = size / 1e6
    qd_rate = mb / statistics.median(qd_times)
    hf_rate = mb / statistics.median(hf_times)
    ratio = qd_rate / hf_rate
    print(f"throughput, {mb:.0f} MB file, {rounds} alternating rounds, whole process wall time:")
    print(f"  quantdesk download: {qd_rate:7.1f} MB/s  (runs: {', '.join(f'{t:.2f}s' for t in qd_times)})")
    print(f"  hf download:        {hf_rate:7.1f} MB/s  (runs: {', '.join(f'{t:.2f}s' for t in hf_times)})")
    ok = ratio >= 0.95
    print(f"  ratio {ratio:.3f} (target >= 0.95): {'PASS' if ok else 'FAIL'}")
    return ok


def resume_cost(hub: HubEmulator, work: Path, size: int) -> bool:
    os.environ["HF_ENDPOINT"] = hub.endpoint
    os.environ["QUANTDESK_HOME"] = str(work / "qd-resume")
    from app.catalog.hub_client import HubClient
    from app.downloads import BranchDownload, DownloadOptions

    cut = int(size * 0.6)
    hub.reset()
    hub.faults = Faults(path_contains="/blobs/", cut_after_bytes=cut)
    target = work / "resume-model"
    result = BranchDownload(REPO, options=DownloadOptions(target=target), client=HubClient(token=None)).run()
    served = sum(r.bytes_sent for r in hub.requests if r.server == "cdn" and r.method == "GET")
    gets = [r.range for r in hub.requests if r.server == "cdn" and r.method == "GET"]
    factor = served / size
    ok = factor <= 1.02 and str(result.outcome) == "complete"
    print(f"resume after a cut at 60 % ({cut} bytes): requests {gets}")
    verdict = "PASS" if ok else "FAIL"
    print(f"  bytes served {served} for a {size}-byte file = {factor:.4f} x (target <= 1.02): {verdict}")
    shutil.rmtree(target)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description="Download benchmarks against the local Hub emulator.")
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    size = args.size_mb * 1_000_000
    with tempfile.TemporaryDirectory(prefix="qd-bench-") as tmp:
        work = Path(tmp)
        make_repo(work / "hub", size)
        with HubEmulator(work / "hub") as hub:
            ok = throughput(hub, work, size, args.rounds)
            ok = resume_cost(hub, work, size) and ok
    print("ALL PASS" if ok else "SOME FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
