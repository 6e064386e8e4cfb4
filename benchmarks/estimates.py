"""Memory estimates vs published measurements, like for like (app/catalog/data/measurements.json).

Prints, for every row, the measured figure, QuantDesk's estimate measured the same way (peak allocated
without CUDA context and allocator reserve, or nvidia-smi's device total), and the error; then the mean
absolute error and the worst case per stack, and PASS/FAIL against the targets: worst error within
±5 %, and never more than 5 % too low (too low means "fits" when it doesn't).

    python -m benchmarks.estimates            # the table and the verdict (exit 1 on FAIL)
    python -m benchmarks.estimates --parts    # with each estimate's parts
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

from app.catalog.estimate import STACKS, estimate_memory
from app.catalog.measurements import Measurement, load_measurements
from app.catalog.sizing import gptq_checkpoint_bytes
from app.units import MIB

# QuantDesk's own backends' stacks and the measured stack closest to each (not counted: no figure of
# ExLlamaV2 0.3 or GPTQModel 7 is published; this shows how far the app's profiles sit from them).
APP_PROXIES = {"exllamav2": "exllama-v1", "gptqmodel-app": "gptqmodel-2.2"}

WORST_ABS = 0.05  # |error| bound
MAX_LOW = -0.05  # the most an estimate may be below the measurement


def error(row: Measurement) -> float:
    """(estimate - measured) / measured."""
    return (row.comparable_estimate() - row.measured_bytes) / row.measured_bytes


def app_error(row: Measurement, app_stack: str) -> float:
    """The error of a QuantDesk backend's profile on a row of another (peak-allocated) stack."""
    weights = gptq_checkpoint_bytes(row.architecture, row.bits, row.group_size)
    estimate = estimate_memory(
        row.architecture, weights, row.bits, STACKS[app_stack], row.context, row.prompt, devices=row.devices
    )
    return (estimate.allocated - row.measured_bytes) / row.measured_bytes


def main(argv: list[str] | None = None) -> int:
    """Print the comparison; 0 when every stack passes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", action="store_true", help="show each estimate's parts in MiB")
    args = parser.parse_args(argv)
    rows = load_measurements()
    print(f"{'row':<46} {'stack':<21} {'prompt':>6} {'ctx':>6} {'measured':>9} {'estimate':>9} {'error':>7}")
    by_stack: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        err = error(row)
        if not row.excluded:
            by_stack[row.source.stack].append(err)
        print(
            f"{row.label[:46]:<46} {row.source.stack:<21} {row.prompt:>6} {row.context:>6} "
            f"{row.measured_bytes / MIB:>8.0f}M {row.comparable_estimate() / MIB:>8.0f}M {err * 100:>+6.1f}%"
            + ("  (not counted)" if row.excluded else "")
        )
        if args.parts:
            parts = ", ".join(f"{k} {v / MIB:.0f}" for k, v in row.estimate().parts().items() if v)
            print(f"    MiB: {parts}")
    for row in rows:
        if row.excluded:
            print(f"not counted: {row.label}: {row.excluded}")
    print()
    print(f"{'stack':<21} {'rows':>4} {'MAE':>6} {'worst':>7} {'lowest':>7}  verdict")
    failed = False
    for stack, errors in by_stack.items():
        mae = sum(abs(e) for e in errors) / len(errors)
        worst = max(errors, key=abs)
        lowest = min(errors)
        ok = abs(worst) <= WORST_ABS and lowest >= MAX_LOW
        failed |= not ok
        print(
            f"{stack:<21} {len(errors):>4} {mae * 100:>5.1f}% {worst * 100:>+6.1f}% {lowest * 100:>+6.1f}%  "
            f"{'PASS' if ok else 'FAIL'}"
        )
    print()
    print("QuantDesk's backend profiles on the nearest measured stack's rows (allocated, not counted):")
    for app_stack, proxy in APP_PROXIES.items():
        errors = [app_error(row, app_stack) for row in rows if row.source.stack == proxy and not row.excluded]
        print(
            f"  {app_stack:<14} on {proxy:<14} {len(errors):>3} rows, "
            f"error {min(errors) * 100:+.1f} % ... {max(errors) * 100:+.1f} %"
        )
    print()
    print("FAIL" if failed else "PASS", "(targets: worst within ±5 %, never more than 5 % too low)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
