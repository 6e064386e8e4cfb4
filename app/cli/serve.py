"""``quantdesk serve MODEL_DIR|REPO:BRANCH``: serve a downloaded model as an OpenAI-compatible API.

The server listens at once (requests get 503 while the model loads), prints its base URL on stdout when
it is up, and runs until Ctrl-C. Binding anything but this machine needs an API key (``--api-key-env``
or the keyring); the key is never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

from app.cli.args import Subcommands, positive_int

if TYPE_CHECKING:
    from app.chat.profiles import ProfileStore
    from app.chat.session_setup import ChatPlan
    from app.serve.app import ServeState
    from app.serve.runner import ServerRunner

BACKEND_CHOICES = ("auto", "gptqmodel", "exllamav2")


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be between 0 (any free port) and 65535")
    return value


def add_parser(commands: Subcommands) -> None:
    """Register ``quantdesk serve``."""
    from app.serve.gate import DEFAULT_MAX_WAITING
    from app.serve.runner import DEFAULT_HOST, DEFAULT_PORT, KEYRING_USER

    serve = commands.add_parser(
        "serve",
        help="serve a downloaded model to other apps (an OpenAI-compatible API on localhost)",
        description="Serve a model folder or a downloaded REPO[:BRANCH] at http://HOST:PORT/v1 "
        "(/v1/models, /v1/chat/completions, /v1/completions). The model's template and profile are the "
        "defaults; requests override sampling. Prints the base URL on stdout; Ctrl-C stops it.",
        epilog=f"Any host but {DEFAULT_HOST} needs an API key: --api-key-env VAR, or the OS keyring "
        f"(service QuantDesk, user {KEYRING_USER}).",
    )
    serve.add_argument("model", help="a model folder, or REPO[:BRANCH] downloaded with 'quantdesk download'")
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    serve.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any)"
    )
    serve.add_argument(
        "--api-key-env", default=None, metavar="VAR", help="read the API key from this variable"
    )
    serve.add_argument(
        "--backend", choices=BACKEND_CHOICES, default=None, help="inference backend (default auto)"
    )
    serve.add_argument("--context", type=positive_int, default=None, help="context length to load with")
    serve.add_argument(
        "--max-waiting",
        type=int,
        default=DEFAULT_MAX_WAITING,
        help=f"requests that may wait for the model before 429 (default {DEFAULT_MAX_WAITING})",
    )


@contextlib.contextmanager
def _stdout_for_the_url_only() -> Iterator[TextIO]:
    """Keep stdout for the URL: while it lasts, everything written to file descriptor 1 (libraries
    print banners and logs there while a model loads) goes to stderr. Yields the real stdout."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no usable descriptors: keep stdout as it is
        yield sys.stdout
        return
    real = os.fdopen(os.dup(saved), "w", encoding="utf-8")
    try:
        yield real
    finally:
        sys.stdout.flush()
        real.close()
        os.dup2(saved, 1)
        os.close(saved)


def run(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """Serve until Ctrl-C (or until ``stop`` is set)."""
    from app.chat.profiles import ModelSettings, ProfileStore
    from app.chat.session_setup import LocalTarget, plan_local_chat
    from app.cli.chat import resolve_model
    from app.serve.app import ServeState
    from app.serve.gate import ModelGate
    from app.serve.runner import ServerRunner, check_bind, read_api_key
    from app.serve.setup import model_id

    api_key = read_api_key(args.api_key_env)
    check_bind(args.host, bool(api_key))  # before anything loads
    resolved = resolve_model(args.model)
    target = LocalTarget(resolved.model_dir, resolved.repo_id, resolved.branch, resolved.commit)
    profiles = ProfileStore()
    plan = plan_local_chat(target, ModelSettings(backend=args.backend, context_length=args.context), profiles)
    if plan.profile_warning:
        print(f"warning: {plan.profile_warning}", file=sys.stderr)
    state = ServeState(model_id(plan), ModelGate(args.max_waiting), api_key)
    runner = ServerRunner(state, args.host, args.port)
    url = runner.start()
    try:
        with _stdout_for_the_url_only() as url_out:
            _load_and_serve(runner, state, plan, profiles, url, url_out, stop)
    except KeyboardInterrupt:
        print("Stopped.", file=sys.stderr)
    finally:
        runner.stop()
    return 0


def _load_and_serve(
    runner: ServerRunner,
    state: ServeState,
    plan: ChatPlan,
    profiles: ProfileStore,
    url: str,
    url_out: TextIO,
    stop: threading.Event | None,
) -> None:
    from app.chat.session_setup import load_local, record_memory, select_backend
    from app.serve.setup import served_model

    print(f"Loading {state.model_id} (requests get 503 until it is ready)...", file=sys.stderr)
    selection = select_backend(plan.files, str(plan.effective.value("backend")))
    model = load_local(selection, plan.files, plan.effective.load_settings())
    try:
        record_memory(profiles, plan, model)
        state.set_loaded(served_model(plan, model))
        print(f"Template: {plan.choice.label}: {plan.choice.detail}", file=sys.stderr)
        print(url, file=url_out, flush=True)  # the one line stdout promises: the base URL
        print(f"Serving '{state.model_id}' at {url}; Ctrl-C stops.", file=sys.stderr)
        (stop or threading.Event()).wait()
    finally:
        runner.stop()
        model.unload()
