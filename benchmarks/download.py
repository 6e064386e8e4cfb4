"""Download benchmarks against the local Hub emulator: QuantDesk vs ``hf download`` vs ``aria2c -x8 -s8``.

Run standalone: ``.venv/bin/python benchmarks/download.py [--size-mb 512] [--rounds 3]``.

Each contender runs as its own process, as a user would start it, against the same emulator; contenders
alternate within every round (the order rotates) so a load change on the machine hits all of them.
Cases (issue 12):
  (a) one 512 MB file, each connection capped at 10 MB/s      targets: >= 4 x hf, >= 0.9 x aria2c
  (b) one 512 MB file, uncapped loopback                       targets: >= 1.2 x hf, >= 0.8 x aria2c
  (c) 8 files x 64 MB, each connection capped at 10 MB/s       target: >= 2 x hf
  (d) a 40 MB/s link shared by all connections, 512 MB file    target: QuantDesk uses >= 0.9 of the link
  kill -9 at 60 % (capped as in a), then resume                target: bytes served <= 1.05 x the file
  peak RSS of a 512 MB download above the idle process         target: <= 150 MB
Throughput is the file bytes over the median wall time of the whole process (start-up included). Case (d)
measures the link's use from the first request to the last byte (start-up is not the link's fault).
CPU seconds per GiB of each contender (user + sys of its process) are printed for the uncapped case.
Prints figures, ratios and PASS/FAIL per target; exit status 0 only when every target passes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hub_emulator import Faults, HubEmulator  # noqa: E402

ONE = "bench/One-GPTQ"
MANY = "bench/Many-GPTQ"
CAP_BPS = 10_000_000  # per connection, cases (a), (c) and the kill test
LINK_BPS = 40_000_000  # case (d)
BIN = Path(sys.executable).parent
ARIA2C = shutil.which("aria2c")


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    maxrss_kb: int


@dataclass
class Contender:
    name: str
    command: Callable[[Path, str, list[str]], list[str]]  # (output dir, repo, files) -> argv
    runs: list[Run] = field(default_factory=list)


def quantdesk_cmd(out: Path, repo: str, files: list[str]) -> list[str]:
    return [sys.executable, "-m", "app.cli", "download", repo, "--dir", str(out)]


def hf_cmd(out: Path, repo: str, files: list[str]) -> list[str]:
    return [str(BIN / "hf"), "download", repo, "--cache-dir", str(out), "--max-workers", "8"]


def make_aria2c_cmd(endpoint: str) -> Callable[[Path, str, list[str]], list[str]]:
    def command(out: Path, repo: str, files: list[str]) -> list[str]:
        urls = out.parent / f"{out.name}.urls"
        urls.write_text("".join(f"{endpoint}/{repo}/resolve/main/{name}\n  out={name}\n" for name in files))
        assert ARIA2C is not None
        return [
            ARIA2C,
            "-x8",
            "-s8",
            "-j8",
            "-d",
            str(out),
            "-i",
            str(urls),
            "--console-log-level=error",
            "--summary-interval=0",
            "--download-result=hide",
            "--allow-overwrite=true",
            "--auto-file-renaming=false",
        ]

    return command


def write_random(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(8 * 1024 * 1024)
    with path.open("wb") as fh:
        left = size
        while left > 0:
            fh.write(block[: min(len(block), left)])
            left -= min(len(block), left)


def make_repos(root: Path, size: int) -> dict[str, list[str]]:
    """One repo with a single big file, one with eight files of size/8 (random bytes: nothing compresses)."""
    one = root / ONE / "main"
    write_random(one / "model.safetensors", size)
    (one / "config.json").write_text('{"model_type": "llama"}\n')
    many = root / MANY / "main"
    names = [f"model-{i + 1:05d}-of-00008.safetensors" for i in range(8)]
    for name in names:
        write_random(many / name, size // 8)
    (many / "config.json").write_text('{"model_type": "llama"}\n')
    return {ONE: ["config.json", "model.safetensors"], MANY: ["config.json", *names]}


def run_process(command: list[str], env: dict[str, str]) -> Run:
    """Run to completion; wall time and the process's own CPU and peak RSS (wait4, not the emulator's)."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({proc.returncode}): {err[-2000:]}")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)


def served(hub: HubEmulator) -> int:
    return sum(r.bytes_sent for r in hub.requests if r.server == "cdn" and r.method == "GET")


def link_window(hub: HubEmulator) -> float:
    """Seconds from the first CDN request to the last byte sent."""
    gets = [r for r in hub.requests if r.server == "cdn" and r.method == "GET"]
    return max(r.time + r.duration_s for r in gets) - min(r.time for r in gets)


class Bench:
    def __init__(self, hub: HubEmulator, work: Path, files: dict[str, list[str]], rounds: int) -> None:
        self.hub = hub
        self.work = work
        self.files = files
        self.rounds = rounds
        self.env = dict(
            os.environ,
            HF_ENDPOINT=hub.endpoint,
            HF_HUB_DISABLE_TELEMETRY="1",
            QUANTDESK_HOME=str(work / "qd-home"),
            HF_HOME=str(work / "hf-home"),
            PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
            PYTHONPATH=str(ROOT),
        )
        self.env.pop("HF_TOKEN", None)
        self.results: list[tuple[str, bool]] = []

    def contenders(self) -> list[Contender]:
        found = [Contender("quantdesk", quantdesk_cmd), Contender("hf download", hf_cmd)]
        if ARIA2C:
            found.append(Contender("aria2c -x8 -s8", make_aria2c_cmd(self.hub.endpoint)))
        return found

    def case(
        self, label: str, repo: str, faults: Faults, link_bps: int | None, only: set[str] | None = None
    ) -> dict[str, Contender]:
        size = sum((self.hub.root / repo / "main" / f).stat().st_size for f in self.files[repo])
        contenders = [c for c in self.contenders() if only is None or c.name in only]
        windows: dict[str, list[float]] = {c.name: [] for c in contenders}
        for i in range(self.rounds):
            order = contenders[i % len(contenders) :] + contenders[: i % len(contenders)]
            for contender in order:
                out = self.work / "out"
                shutil.rmtree(out, ignore_errors=True)
                self.hub.reset()
                self.hub.faults = faults
                self.hub.link_bps = link_bps
                contender.runs.append(run_process(contender.command(out, repo, self.files[repo]), self.env))
                windows[contender.name].append(link_window(self.hub))
                shutil.rmtree(out, ignore_errors=True)
        self.hub.reset()
        print(f"\n({label}) {len(self.files[repo]) - 1} file(s), {size / 1e6:.0f} MB, {self.rounds} rounds:")
        for c in contenders:
            walls = ", ".join(f"{r.wall_s:.2f}" for r in c.runs)
            rate = size / statistics.median(r.wall_s for r in c.runs) / 1e6
            cpu = statistics.median(r.cpu_s for r in c.runs) / (size / 2**30)
            window = size / statistics.median(windows[c.name]) / 1e6
            print(
                f"  {c.name:15s} {rate:7.1f} MB/s   transfer {window:7.1f} MB/s   "
                f"{cpu:4.2f} CPU-s/GiB   runs {walls} s"
            )
        self.windows = windows
        self.size = size
        return {c.name: c for c in contenders}

    def target(self, text: str, value: float, goal: float, higher: bool = True) -> None:
        ok = value >= goal if higher else value <= goal
        print(
            f"  {text}: {value:.2f} (target {'>=' if higher else '<='} {goal:g}) {'PASS' if ok else 'FAIL'}"
        )
        self.results.append((text, ok))

    def ratios(self, found: dict[str, Contender], vs_hf: float, vs_aria: float | None, case: str) -> None:
        qd = statistics.median(r.wall_s for r in found["quantdesk"].runs)
        hf = statistics.median(r.wall_s for r in found["hf download"].runs)
        self.target(f"({case}) quantdesk / hf download", hf / qd, vs_hf)
        if vs_aria is None:
            return
        if "aria2c -x8 -s8" not in found:
            print(f"  ({case}) quantdesk / aria2c: aria2c IS MISSING (apt-get install aria2): FAIL")
            self.results.append((f"({case}) vs aria2c", False))
            return
        aria = statistics.median(r.wall_s for r in found["aria2c -x8 -s8"].runs)
        self.target(f"({case}) quantdesk / aria2c -x8 -s8", aria / qd, vs_aria)

    def kill_and_resume(self) -> None:
        out = self.work / "kill"
        shutil.rmtree(out, ignore_errors=True)
        self.hub.reset()
        self.hub.faults = Faults(path_contains="/blobs/", throttle_bps=CAP_BPS)
        size = (self.hub.root / ONE / "main" / "model.safetensors").stat().st_size
        proc = subprocess.Popen(
            quantdesk_cmd(out, ONE, []),
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        record = out / ".quantdesk" / "parts" / "model.safetensors.part.json"
        from app.downloads.state import PartState, read_json

        while True:
            data = read_json(record)
            state = PartState.from_dict(data) if data else None
            if state is not None and state.bytes_done >= 0.6 * size:
                break
            if proc.poll() is not None:
                raise RuntimeError("the download ended before 60 %")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        at_kill = state.bytes_done
        time.sleep(0.5)  # let the emulator notice the dropped connections (and log what it sent)
        run_process(quantdesk_cmd(out, ONE, []), self.env)
        total = served(self.hub)
        print(
            f"\nkill -9 at {at_kill / size:.0%} of {size / 1e6:.0f} MB "
            "(capped 10 MB/s per connection), then resume:"
        )
        print(f"  bytes served {total} for a {size}-byte file")
        self.target("bytes served / file size", total / size, 1.05, higher=False)
        self.hub.reset()
        shutil.rmtree(out, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description="Download benchmarks against the local Hub emulator.")
    parser.add_argument("--size-mb", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default="abcdkm", help="a b c d, k (kill -9), m (memory); default all")
    args = parser.parse_args()
    size = args.size_mb * 1_000_000
    started = time.perf_counter()
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    if ARIA2C is None:
        print("aria2c IS MISSING: install the Debian package `aria2`; its targets are reported as FAIL.")
    with tempfile.TemporaryDirectory(prefix="qd-bench-") as tmp:
        work = Path(tmp)
        files = make_repos(work / "hub", size)
        with HubEmulator(work / "hub") as hub:
            bench = Bench(hub, work, files, args.rounds)
            for repo in files:  # the emulator hashes each file once; not on any contender's clock
                hub.commit_of(repo, "main")
            capped = Faults(path_contains="/blobs/", throttle_bps=CAP_BPS)
            cases = set(args.cases)
            if "a" in cases:
                found = bench.case("a: per-connection cap 10 MB/s", ONE, capped, None)
                bench.ratios(found, 4.0, 0.9, "a")
            qd_runs: list[Run] = []
            if "b" in cases:
                found = bench.case("b: uncapped loopback", ONE, Faults(), None)
                bench.ratios(found, 1.2, 0.8, "b")
                qd_runs = found["quantdesk"].runs
            if "c" in cases:
                only = {"quantdesk", "hf download"}
                found = bench.case("c: 8 files, per-connection cap 10 MB/s", MANY, capped, None, only)
                bench.ratios(found, 2.0, None, "c")
            if "d" in cases:
                bench.case("d: link 40 MB/s shared", ONE, Faults(), LINK_BPS, {"quantdesk"})
                used = bench.size / statistics.median(bench.windows["quantdesk"]) / LINK_BPS
                bench.target("(d) quantdesk's share of the link", used, 0.9)
            if "k" in cases:
                bench.kill_and_resume()
            if "m" in cases:
                out = work / "idle"
                if not qd_runs:
                    qd_runs = [run_process(quantdesk_cmd(out, ONE, []), bench.env)]
                else:
                    run_process(quantdesk_cmd(out, ONE, []), bench.env)
                idle = run_process(
                    quantdesk_cmd(out, ONE, []), bench.env
                ).maxrss_kb  # complete: nothing to do
                peak = max(r.maxrss_kb for r in qd_runs)
                print(
                    f"\npeak RSS: {peak / 1024:.0f} MB downloading {size / 1e6:.0f} MB, "
                    f"idle run {idle / 1024:.0f} MB"
                )
                bench.target("peak RSS above idle, MB", (peak - idle) / 1024, 150, higher=False)
    ok = all(passed for _, passed in bench.results)
    print(
        f"\n{'ALL PASS' if ok else 'SOME FAILED'} in {time.perf_counter() - started:.0f} s; "
        f"load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
