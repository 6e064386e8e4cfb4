"""`quantdesk branches` as a user runs it: a separate process against the local Hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hub_emulator import Faults, HubEmulator

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
        timeout=120,
    )


def test_json_lists_every_branch_with_the_documented_fields(hub: HubEmulator) -> None:
    result = _run("branches", "TheBloke/TinyLlama-GPTQ", "--json", "--context", "1024", "--cache", "q4")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 8 and rows[0]["branch"] == "main"
    by_name = {r["branch"]: r for r in rows}
    three = by_name["gptq-3bit--1g-actorder_True"]
    assert (three["bits"], three["group_size"], three["act_order"]) == (3, None, True)
    assert three["exllama"] is False and "4-bit GPTQ only" in three["backends"]["exllamav2"]["reason"]
    assert by_name["main"]["backends"]["exllamav2"]["cache_type"] == "q4"
    assert by_name["main"]["context"] == 1024
    assert by_name["fp16"]["bits"] is None and by_name["fp16"]["is_gptq"] is False
    assert all(r["size_bytes"] == sum(f["size"] for f in r["files"]) for r in rows)


def test_table_output_and_planned_gpus(hub: HubEmulator) -> None:
    result = _run("branches", "TheBloke/TinyLlama-GPTQ", "--gpus", "24")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "TheBloke/TinyLlama-GPTQ: 8 branches"
    assert lines[1].split()[:5] == ["Branch", "Bits", "Group", "Act", "Size"]
    main_line = next(line for line in lines if line.startswith("main "))
    assert "fits (exllamav2)" in main_line
    assert any("model card says group size 64" in line for line in lines)


def test_offline_shows_the_cache(hub: HubEmulator) -> None:
    assert _run("branches", "TheBloke/TinyLlama-GPTQ").returncode == 0
    hub.reset()
    result = _run("branches", "TheBloke/TinyLlama-GPTQ", "--offline", "--json")
    assert result.returncode == 0 and len(json.loads(result.stdout)) == 8
    assert hub.requests == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["branches", "not a repo"], "is not a Hugging Face model repo"),
        (["branches", "TheBloke/Nope-GPTQ"], "was not found on the Hub"),
        (["branches", "TheBloke/TinyLlama-GPTQ:nope"], "Branch 'nope' does not exist"),
        (["branches", "TheBloke/Uncached-GPTQ", "--offline"], "Nothing is cached"),
    ],
)
def test_errors_are_one_clear_line_and_a_nonzero_exit(
    hub: HubEmulator, args: list[str], expected: str
) -> None:
    result = _run(*args)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert "Traceback" not in result.stderr


def test_gated_repo_prints_its_table_and_says_how_to_get_access(hub: HubEmulator) -> None:
    result = _run("branches", "TheBloke/Gated-GPTQ")
    assert result.returncode == 0
    assert result.stdout.startswith("TheBloke/Gated-GPTQ: ") and "main" in result.stdout
    assert "is gated" in result.stderr and "token" in result.stderr


def test_server_errors_are_reported_not_raised(hub: HubEmulator) -> None:
    hub.faults = Faults(fail_first=1000, fail_status=500)
    result = _run("branches", "TheBloke/TinyLlama-GPTQ")
    assert result.returncode == 1 and "error (500)" in result.stderr and "Traceback" not in result.stderr


def test_help_lists_the_commands() -> None:
    # Without arguments `quantdesk` opens the window (tests/ui/test_startup.py); --help prints help.
    result = _run("--help")
    assert result.returncode == 0 and "branches" in result.stdout
