"""``quantdesk chat`` with a local model: argument definitions and handlers.

``app.cli.chat_command`` registers the subcommand and calls :func:`run_chat` (``quantdesk render`` lives
in :mod:`app.cli.render_command`). Nothing heavy is imported here at module level: a backend (torch,
gptqmodel) loads only inside :func:`run_chat`, once a model is about to be loaded.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from app.backends.base import StopReason
from app.backends.remote_code import allow_remote_code
from app.chat.engine import ChatSession, ReplyEnd
from app.chat.model_files import ModelFiles, read_model_files
from app.chat.profiles import ModelSettings, ProfileStore, effective_settings
from app.chat.session_setup import (
    LocalTarget,
    PeakRecorder,
    chat_settings,
    load_local,
    local_meta,
    plan_local_chat,
    record_memory,
    select_backend,
)
from app.cli.args import positive_int
from app.cli.render_command import render_prompt as render_prompt  # its old home; tests import it here
from app.errors import (
    ChatModelNotFoundError,
    InvalidRepoIdError,
    QuantDeskError,
    RemoteCodeConsentError,
)

BACKEND_CHOICES = ("auto", "gptqmodel", "exllamav2")
REPL_HELP = (
    "Commands: /reset (new conversation), /save (keep this conversation), /exit. Ctrl-C stops a reply."
)


def _temperature(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 5:
        raise argparse.ArgumentTypeError("must be between 0 (greedy) and 5")
    return value


def add_chat_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``quantdesk chat``."""
    chat = commands.add_parser(
        "chat",
        help="chat with a downloaded model (one prompt, or an interactive session)",
        description="Chat with a model folder or a downloaded REPO[:BRANCH]. With --prompt, print only the "
        "reply and exit; without it, an interactive session that streams replies. The model's profile "
        "applies; --save-profile stores the given options in it.",
        epilog=REPL_HELP,
    )
    chat.add_argument("model", help="a model folder, or REPO[:BRANCH] downloaded with 'quantdesk download'")
    chat.add_argument(
        "--backend", choices=BACKEND_CHOICES, default=None, help="inference backend (default auto)"
    )
    chat.add_argument("--template", default=None, help="prompt template name, or 'jinja' for the model's own")
    chat.add_argument("--system", default=None, help="system prompt ('' for none)")
    chat.add_argument("--prompt", default=None, help="send this one message, print the reply and exit")
    chat.add_argument("--max-new-tokens", type=positive_int, default=None, help="longest reply in tokens")
    chat.add_argument("--temperature", type=_temperature, default=None, help="0 for greedy decoding")
    chat.add_argument("--seed", type=int, default=None, help="sampling seed (reproducible replies)")
    chat.add_argument("--context", type=positive_int, default=None, help="context length to load with")
    chat.add_argument(
        "--save-profile", action="store_true", help="store these options in the model's profile"
    )
    chat.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the Python code shipped with this model folder to run (remembered for the folder; "
        "only for repos you trust)",
    )


def _shown(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters for a message (a 5,000-character argument stays readable)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- chat ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedModel:
    """A model folder and what is known of its origin."""

    model_dir: Path
    repo_id: str | None
    branch: str | None
    commit: str | None


def resolve_model(text: str) -> ResolvedModel:
    """A model folder as given, or the downloaded copy of ``REPO[:BRANCH]`` (QuantDesk's folders first,
    then the Hugging Face cache). ChatModelNotFoundError when it is neither."""
    path = Path(text).expanduser()
    try:
        is_dir = path.is_dir()
    except OSError:  # ENAMETOOLONG and friends: it cannot be a folder, maybe it is a repo id
        is_dir = False
    if is_dir:
        files = read_model_files(path)
        return ResolvedModel(path, files.repo_id, files.branch, files.commit)
    from app.catalog.repo_ref import parse_repo_ref

    try:
        ref = parse_repo_ref(text)
    except InvalidRepoIdError as exc:
        raise ChatModelNotFoundError(
            f"'{_shown(text)}' is neither a model folder nor a repo id.", "Give a folder or REPO[:BRANCH]."
        ) from exc
    branch = ref.branch or "main"
    from app.downloads.registry import list_local_models

    found = [m for m in list_local_models() if m.repo_id == ref.repo_id and m.branch == branch and m.complete]
    if not found:
        raise ChatModelNotFoundError(
            f"{ref.repo_id}:{branch} is not downloaded.",
            f"Run 'quantdesk download {ref.repo_id}:{branch}' first.",
        )
    model = found[0]
    return ResolvedModel(model.path, model.repo_id, model.branch, model.commit)


def _chat_layer(args: argparse.Namespace) -> ModelSettings:
    return ModelSettings(
        backend=args.backend,
        context_length=args.context,
        template=args.template,
        system_prompt=args.system,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )


def load_model(
    files: ModelFiles, backend_name: str, settings: Any, progress: Callable[[float, str], None]
) -> Any:
    """Choose a backend the way the catalog does (``backend_name`` "auto" or an override that is
    refused with its reason when it cannot work) and load the folder with it.

    Imports the backends package here, not at module level: the CLI must start without torch.
    """
    selection = select_backend(files, backend_name)
    print(f"Backend: {selection.backend.display_name}: {selection.reason}", file=sys.stderr)
    try:
        return load_local(selection, files, settings, progress)
    except RemoteCodeConsentError as exc:
        raise QuantDeskError(
            f"{exc.model_dir} ships its own Python code ({exc.code}), which QuantDesk does not run "
            "without your consent: if you trust the repo it came from, run again with --trust-remote-code "
            "(remembered for this folder)."
        ) from exc


class _Printer:
    """Loading progress redrawn on one stderr line (silent when stderr is not a terminal)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()

    def __call__(self, fraction: float, message: str) -> None:
        if self.live:
            self.stream.write(f"\r{message} ({fraction:.0%})\033[K")
            self.stream.flush()

    def done(self) -> None:
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()


def stream_reply(chunks: Iterator[str | ReplyEnd], session: ChatSession, out: TextIO) -> ReplyEnd | None:
    """Print a reply as it streams; Ctrl-C stops it (the partial reply is kept). A failing stream's
    QuantDeskError propagates (the remote chat reports it and goes on)."""
    end: ReplyEnd | None = None
    try:
        for item in chunks:
            if isinstance(item, ReplyEnd):
                end = item
            else:
                out.write(item)
                out.flush()
    except KeyboardInterrupt:
        session.stop()
        for item in chunks:  # drain: the backend ends within one token
            if isinstance(item, ReplyEnd):
                end = item
    out.write("\n")
    out.flush()
    if end is not None and end.stats.stop_reason is StopReason.LENGTH:
        print("note: the reply reached the length limit (--max-new-tokens).", file=sys.stderr)
    return end


def run_chat(args: argparse.Namespace, out: TextIO | None = None, inp: TextIO | None = None) -> int:
    """``quantdesk chat``: one prompt (``--prompt``) or an interactive session (stdout/stdin by default)."""
    out = out or sys.stdout
    inp = inp or sys.stdin
    resolved = resolve_model(args.model)
    if getattr(args, "trust_remote_code", False) and allow_remote_code(resolved.model_dir):
        print(
            f"Allowed the Python code shipped in {resolved.model_dir} to run (remembered for this folder).",
            file=sys.stderr,
        )
    # The registry knows the branch of a Hugging Face cache snapshot; the folder alone does not.
    target = LocalTarget(resolved.model_dir, resolved.repo_id, resolved.branch, resolved.commit)
    profiles = ProfileStore()
    chat_layer = _chat_layer(args)
    # Detects the template first: an unknown --template fails here, before it could be saved.
    plan = plan_local_chat(target, chat_layer, profiles)
    if plan.profile_warning:
        print(f"warning: {plan.profile_warning}", file=sys.stderr)
    effective = plan.effective
    if args.save_profile:
        saved = profiles.update(plan.profile_repo, plan.profile_branch, chat_layer).settings
        effective = effective_settings(plan.model_settings, saved, chat_layer)
        print(
            f"Saved these options in the profile of {plan.profile_repo}:{plan.profile_branch}.",
            file=sys.stderr,
        )
    choice = plan.choice
    print(f"Template: {choice.label}: {choice.detail}", file=sys.stderr)

    printer = _Printer(sys.stderr)
    model = load_model(plan.files, str(effective.value("backend")), effective.load_settings(), printer)
    printer.done()
    try:
        record_memory(profiles, plan, model)
        peaks = PeakRecorder(plan, model, str(effective.value("cache_type")))
        settings = chat_settings(effective, plan.files)
        session = ChatSession(model, choice, settings=settings)
        session.conversation.meta = local_meta(target, model.backend, choice, settings)
        if args.prompt is not None:
            _record_peak(peaks, stream_reply(session.send(args.prompt), session, out))
            return 0
        return _repl(session, out, inp, peaks)
    finally:
        model.unload()


def run_repl(
    session: ChatSession,
    out: TextIO,
    inp: TextIO,
    help_text: str,
    stream_reply: Callable[[Iterator[str | ReplyEnd]], object],
) -> int:
    """The interactive chat loop shared by local and remote chats: /reset, /save, /exit.

    ``stream_reply`` prints one reply; an error from sending or streaming is printed and the session
    goes on (the partial reply stays in the conversation).
    """
    from app.chat.storage import ChatStore

    print(help_text, file=sys.stderr)
    store: ChatStore | None = None  # conversations are saved on /save, then after every change
    try:
        while True:
            out.write("> ")
            out.flush()
            try:
                line = inp.readline()
            except KeyboardInterrupt:
                line = ""
            if not line:
                out.write("\n")
                return 0
            text = line.rstrip("\n")
            command = text.strip().lower()
            if command in ("/exit", "/quit"):
                return 0
            if command == "/reset":
                meta = session.conversation.meta
                session.store = None  # the new conversation is saved only after /save
                session.reset().meta = meta
                print("New conversation.", file=sys.stderr)
                continue
            if command == "/save":
                if store is None:
                    store = ChatStore()
                    if store.warning:  # e.g. a damaged file was set aside and a new one started
                        print(f"warning: {store.warning}", file=sys.stderr)
                session.store = store
                try:
                    store.sync(session.conversation)
                except QuantDeskError as exc:
                    print(f"error: {exc.user_message}", file=sys.stderr)
                    continue
                print(
                    f"Saved as conversation {session.conversation.id}; later turns are saved too.",
                    file=sys.stderr,
                )
                continue
            if not text.strip():
                continue
            try:
                stream_reply(session.send(text))
            except QuantDeskError as exc:
                print(f"error: {exc.user_message}", file=sys.stderr)
    finally:
        if store is not None:
            store.close()


def _record_peak(peaks: PeakRecorder | None, end: ReplyEnd | None) -> None:
    """Keep the memory peak after a reply (what the catalog's "measured here" shows)."""
    if peaks is not None and end is not None:
        warning = peaks.after_reply(end.stats.prompt_tokens)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)


def _repl(session: ChatSession, out: TextIO, inp: TextIO, peaks: PeakRecorder | None = None) -> int:
    def reply(chunks: Iterator[str | ReplyEnd]) -> None:
        end = stream_reply(chunks, session, out)
        _record_peak(peaks, end)
        if end is not None and end.plan.dropped:
            print(
                f"note: {len(end.plan.dropped)} earlier message(s) are out of context for this reply.",
                file=sys.stderr,
            )

    return run_repl(session, out, inp, REPL_HELP, reply)
