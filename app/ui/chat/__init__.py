"""The Chat page, built from components (one module each) over the Qt-free core in app/chat/."""

from app.ui.chat.page import ChatPage

__all__ = ["ChatPage"]
