"""The Qt-free chat core: prompt templates, template detection, conversations inside the context budget,
the streaming chat session, saved conversations and per-model profiles.

The GUI only displays what these modules compute; the CLI (``quantdesk chat``/``quantdesk render``)
drives the same code.
"""
