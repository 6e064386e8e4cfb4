"""The libraries' banners, logs and warnings go to the log file, not the terminal (issue 11.17).

A real ``quantdesk chat`` on the tiny GPTQ model in a fresh interpreter: GPTQModel prints its banner and
INFO lines on stdout at import and load, transformers warns on stderr. stdout must carry the reply only.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

from app.logging_setup import (
    adopt_library_loggers,
    library_output,
    log_file,
    setup_logging,
    shutdown_logging,
)
from tests.models.fixtures import TINY_MAIN

ROOT = Path(__file__).resolve().parents[1]
QUANTDESK_STDERR = ("Template:", "Backend:", "note:", "warning:")
LIBRARY_WORDS = ("GPT-QModel", "INFO", "Warning", "WARN", "torch")


def chat(model: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [*extra, "chat", str(model), "--prompt", "The capital of France is", "--max-new-tokens", "4"]
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args, "--temperature", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_chat_prints_only_the_reply_and_the_log_file_keeps_the_libraries_output(
    tiny_models: dict[str, Path],
) -> None:
    result = chat(tiny_models[TINY_MAIN])
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1, result.stdout  # the reply, nothing else
    assert not any(word in result.stdout for word in LIBRARY_WORDS), result.stdout
    foreign = [line for line in result.stderr.splitlines() if not line.startswith(QUANTDESK_STDERR)]
    assert foreign == [], result.stderr
    logged = log_file().read_text(encoding="utf-8")
    assert "GPT-QModel" in logged and "from_quantized" in logged  # the banner and the loader's lines


def test_verbose_shows_the_libraries_output_on_stderr(tiny_models: dict[str, Path]) -> None:
    result = chat(tiny_models[TINY_MAIN], "--verbose")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1, result.stdout
    assert "GPT-QModel" in result.stderr


def test_library_output_logs_prints_warnings_and_library_handlers(capsys: object) -> None:
    try:
        assert setup_logging() == log_file()
        library = logging.getLogger("somelibrary")
        library.addHandler(logging.StreamHandler(sys.stderr))  # as transformers does on import
        library.propagate = False
        adopt_library_loggers()
        with library_output():
            print("\x1b[32mINFO  banner line\x1b[0m")
            print("a warning printed on stderr", file=sys.stderr)
            with warnings.catch_warnings():  # shown even if an earlier test's filters hide warnings
                warnings.simplefilter("always")
                warnings.warn("a library warning", UserWarning, stacklevel=1)
            library.warning("a library log record")
            logging.getLogger("httpx").info("HTTP Request: GET http://user:sk-secret@host/v1/models")
        captured = capsys.readouterr()  # type: ignore[attr-defined]
        assert captured.out == "" and captured.err == ""
        logged = log_file().read_text(encoding="utf-8")
        for text in (
            "INFO  banner line",
            "a warning printed on stderr",
            "a library warning",
            "a library log record",
        ):
            assert text in logged
        assert "\x1b[" not in logged
        assert "sk-secret" not in logged  # request URLs (which may carry a key) are not logged
        print("after the block")
        assert capsys.readouterr().out == "after the block\n"  # type: ignore[attr-defined]
    finally:
        shutdown_logging()
