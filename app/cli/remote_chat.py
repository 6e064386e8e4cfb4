"""``quantdesk chat --endpoint URL|NAME``: the chat command with a model on an OpenAI-compatible server.

``app.cli`` adds the options to the ``chat`` subcommand (:func:`add_remote_options`) and sends a chat
with ``--endpoint`` here (:func:`run_remote_chat`). The same chat engine, templates, profiles and saved
conversations as a local model; only the model lives elsewhere. Nothing heavy is imported: the remote
engine needs no torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from typing import TextIO

from app.chat.engine import ChatSession, ReplyEnd
from app.errors import EndpointConfigError, QuantDeskError

REPL_HELP = (
    "Commands: /reset (new conversation), /save (keep this conversation), /exit. Ctrl-C stops a reply."
)


def add_remote_options(chat: argparse.ArgumentParser) -> None:
    """Add ``--endpoint``, ``--model`` and ``--api-key-env`` to the ``chat`` parser; with ``--endpoint``
    the positional model folder becomes optional (it may name the served model instead)."""
    for action in chat._actions:
        if action.dest == "model" and not action.option_strings:
            action.nargs = "?"
            action.required = False
            action.default = None
            action.help = (action.help or "") + " (with --endpoint: the served model id, like --model)"
    group = chat.add_argument_group(
        "remote server (vLLM, TGI, TabbyAPI, llama.cpp: any OpenAI-compatible API)"
    )
    group.add_argument(
        "--endpoint",
        default=None,
        metavar="URL|NAME",
        help="chat with a model served at this base URL (e.g. http://gpu-box:8000/v1) or saved endpoint",
    )
    group.add_argument(
        "--model",
        dest="remote_model",
        default=None,
        metavar="ID",
        help="the served model id (default: the endpoint's, or the server's only model)",
    )
    group.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="read the server's API key from this environment variable (a saved endpoint's key comes "
        "from the OS keyring)",
    )


def wants_remote(args: argparse.Namespace) -> bool:
    """Whether a parsed ``chat`` command is for a remote server; checks the remote-only options."""
    if getattr(args, "endpoint", None):
        return True
    if getattr(args, "remote_model", None) or getattr(args, "api_key_env", None):
        raise EndpointConfigError("--model and --api-key-env go with --endpoint URL|NAME.", "")
    if not getattr(args, "model", None):
        raise EndpointConfigError(
            "Name what to chat with: a model folder or a downloaded REPO[:BRANCH], or --endpoint URL.", ""
        )
    return False


def run_remote_chat(args: argparse.Namespace, out: TextIO | None = None, inp: TextIO | None = None) -> int:
    """``quantdesk chat --endpoint ...``: one prompt (``--prompt``) or an interactive session.

    ``--template NAME`` renders the prompt with a QuantDesk template (``/v1/completions``);
    ``--template server`` or none (unless the saved endpoint says otherwise) lets the server apply the
    model's own template (``/v1/chat/completions``).
    """
    from app.chat.engine import ChatSettings
    from app.chat.profiles import ModelSettings, ProfileStore, effective_settings
    from app.remote.endpoints import Endpoint, EndpointStore, connect, read_api_key, template_choice
    from app.remote.session import remote_meta
    from app.remote.wire import display_url

    out = out or sys.stdout
    inp = inp or sys.stdin
    if getattr(args, "backend", None) not in (None, "auto"):
        raise EndpointConfigError("--backend chooses a local backend; it does not apply with --endpoint.", "")
    if args.model and args.remote_model and args.model != args.remote_model:
        raise EndpointConfigError("Name the served model once: with --model ID.", "")
    target = str(args.endpoint).strip()
    endpoint: Endpoint
    if "://" in target:
        endpoint = Endpoint(name=target[:80], base_url=target).checked()
        saved = False
    else:
        endpoint = EndpointStore().get(target)
        saved = True
    model_id = args.remote_model or args.model or endpoint.model
    endpoint = replace(endpoint, model=model_id)

    if args.api_key_env:
        api_key: str | None = os.environ.get(args.api_key_env, "").strip()
        if not api_key:
            raise EndpointConfigError(
                f"The environment variable {args.api_key_env} is not set (or is empty).",
                f"Export the API key in it first, e.g. export {args.api_key_env}=...",
            )
    else:
        api_key = read_api_key(endpoint) if saved else None

    where = display_url(endpoint.base_url)
    profiles = ProfileStore()
    profile_repo = f"endpoint:{where}"
    chat_layer = ModelSettings(
        context_length=args.context,
        template=args.template,
        system_prompt=args.system,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )
    # The profile is per server + model; the model id is known for sure only after connecting.
    context = args.context or endpoint.context_length
    model = connect(replace(endpoint, context_length=context), api_key)
    try:
        loaded = profiles.load(profile_repo, model.model_id)
        if loaded.warning:
            print(f"warning: {loaded.warning}", file=sys.stderr)
        profile_settings = loaded.profile.settings
        if args.context is None and profile_settings.context_length and endpoint.context_length is None:
            model.context_length = profile_settings.context_length
        choice = template_choice(endpoint, args.template or profile_settings.template)
        if args.save_profile:
            profile_settings = profiles.update(profile_repo, model.model_id, chat_layer).settings
            print(f"Saved these options in the profile of {model.model_id} at {where}.", file=sys.stderr)
        effective = effective_settings(None, profile_settings, chat_layer)
        print(
            f"Endpoint: {where}, model {model.model_id} (context {model.context_length} tokens)",
            file=sys.stderr,
        )
        print(f"Template: {choice.label}: {choice.detail}", file=sys.stderr)
        settings = ChatSettings(
            system_prompt=effective.value("system_prompt"),
            sampling=effective.sampling(),
            extra_stop_strings=tuple(effective.value("extra_stop_strings") or ()),
        )
        session = ChatSession(model, choice, settings=settings)
        session.conversation.meta = remote_meta(model.model_id, where, choice, settings)
        if args.prompt is not None:
            return 0 if _stream_reply(session, session.send(args.prompt), out) else 1
        return _repl(session, out, inp)
    finally:
        model.unload()


def _stream_reply(session: ChatSession, chunks: Iterator[str | ReplyEnd], out: TextIO) -> bool:
    """Print a reply as it streams (:func:`app.cli.chat.stream_reply`) and its stats. False when the
    stream failed (the partial reply stays in the conversation and the error is printed)."""
    from app.cli.chat import stream_reply

    try:
        end = stream_reply(chunks, session, out)
    except QuantDeskError as exc:
        out.write("\n")
        out.flush()
        print(f"error: {exc.user_message}", file=sys.stderr)
        return False
    if end is not None:
        stats = end.stats
        print(
            f"[{stats.new_tokens} tokens, {stats.tokens_per_second:.1f} tokens/s, "
            f"first token after {stats.time_to_first_token:.2f} s]",
            file=sys.stderr,
        )
    return True


def _repl(session: ChatSession, out: TextIO, inp: TextIO) -> int:
    from app.cli.chat import run_repl

    # _stream_reply reports a failed reply itself, so the session goes on after it.
    return run_repl(session, out, inp, REPL_HELP, lambda chunks: _stream_reply(session, chunks, out))
