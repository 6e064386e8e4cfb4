"""Everything about models on a server, with one way in.

- :mod:`app.remote.endpoints`: saved endpoints (``endpoints.json``; keys in the OS keyring), "Test
  connection", connecting a chat.
- :mod:`app.remote.wire`: the OpenAI wire format (request, answer and stream shapes), shared with
  QuantDesk's own server (:mod:`app.serve`).
- :mod:`app.remote.client`: the async client and the typed errors; :mod:`app.remote.prompting`: the
  server template mode and token estimates; :mod:`app.remote.engine`: the
  :class:`RemoteModel` the chat engine drives.
- :mod:`app.remote.session`: the profile key and saved meta of a remote chat.

Import the submodules directly; this package imports nothing itself, so ``import app.remote.wire`` never
pulls in the HTTP client's connection machinery or the endpoints store.
"""
