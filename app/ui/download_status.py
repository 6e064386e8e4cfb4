"""What a download card says while it runs: speed, time left, a retry in progress, or "stalled".

Plain text from a :class:`~app.ui.download_jobs.DownloadJob` (no widgets), so the wording is tested
without a window.
"""

from __future__ import annotations

from app.ui.download_jobs import DownloadJob
from app.units import format_size

STALLED_AFTER_S = 10.0  # no byte for this long while running: say "stalled", not a speed and an ETA
MAX_ETA_S = 48 * 3600  # beyond this an ETA is noise (a near-stall): say so instead of "14277.0 h left"


def format_speed(bps: float) -> str:
    """'12.3 MiB/s'; '' when idle."""
    return f"{format_size(int(bps))}/s" if bps > 0 else ""


def format_eta(seconds: float | None) -> str:
    """'2 min left', '40 s left', 'more than 2 days left'; '' when unknown."""
    if seconds is None or seconds <= 0:
        return ""
    if seconds > MAX_ETA_S:
        return "more than 2 days left"
    if seconds < 90:
        return f"{seconds:.0f} s left"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min left"
    return f"{seconds / 3600:.1f} h left"


def running_detail(job: DownloadJob, now: float | None = None) -> str:
    """The line under a running download's bar: a retry in progress, "stalled", or speed and ETA."""
    p = job.progress
    if p is None:
        return ""
    finished = sum(1 for f in p.files if str(f.status) == "done")
    in_flight = sum(1 for f in p.files if str(f.status) in ("running", "verifying"))
    counts = f"{finished} of {len(p.files)} files done" + (f" · {in_flight} in flight" if in_flight else "")
    connections = sum(f.connections for f in p.files)
    if connections:
        counts += f" · {connections} connection{'s' if connections != 1 else ''}"
    if p.message.startswith("retrying"):
        return f"{p.message[0].upper()}{p.message[1:]} · {counts}"
    stalled = job.stalled_for(now)
    if stalled >= STALLED_AFTER_S:
        return f"Stalled: no data for {stalled:.0f} s (it reconnects and resumes by itself) · {counts}"
    parts = [format_speed(p.speed_bps), format_eta(p.eta_s), counts]
    return " · ".join(x for x in parts if x)
