"""How a chat with a server is put together, shared by ``quantdesk chat --endpoint`` and the chat page.

The remote twin of :mod:`app.chat.session_setup`: the profile key of a server's model and the meta a
remote conversation is saved with.
"""

from __future__ import annotations

from app.chat.conversation import ChatMeta
from app.chat.detection import TemplateChoice
from app.chat.engine import ChatSettings
from app.chat.session_setup import sampler_dict
from app.remote.endpoints import Endpoint
from app.remote.wire import display_url


def endpoint_profile_repo(endpoint: Endpoint) -> str:
    """The profile "repo" of a server: ``endpoint:<url without secrets>``."""
    return f"endpoint:{display_url(endpoint.base_url)}"


def remote_meta(model_id: str, where: str, choice: TemplateChoice, settings: ChatSettings) -> ChatMeta:
    """Which server, model, template and sampler a remote conversation used."""
    return ChatMeta(
        repo_id=model_id,
        backend=f"openai ({where})",
        template=choice.name,
        template_source=str(choice.source),
        sampler=sampler_dict(settings.sampling),
    )
