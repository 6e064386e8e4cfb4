"""QuantDesk's own OpenAI-compatible server: the loaded model, served to other apps on localhost.

- :mod:`app.serve.gate`: the model gate, one generation at a time, first come first served, shared
  with the chat window (:class:`~app.serve.gate.GatedModel`).
- :mod:`app.serve.service`: the served model (prompts from the model's template and profile) and one
  request's generation on its own thread.
- :mod:`app.serve.app`: the ASGI app (Starlette): routes, OpenAI errors, streaming, disconnects.
- :mod:`app.serve.runner`: uvicorn on a thread; 127.0.0.1 by default, any other host needs a key.
- :mod:`app.serve.setup`: load a model folder for serving (the CLI and the GUI share it).

Request and answer shapes are :mod:`app.remote.wire`'s, the same the remote engine reads. Qt-free.
"""
