"""Start and stop the server: uvicorn on a thread of its own, safe by default.

The server binds 127.0.0.1 unless asked otherwise; any other address makes the model reachable from
other machines, so it needs an API key (:func:`check_bind` refuses to start without one). The key comes
from an environment variable the user names, else from the OS keyring (service ``QuantDesk``, user
``serve-api-key``); it is never printed, logged or put into a message. The socket is bound here, before
uvicorn starts, so a taken port is a clear :class:`~app.errors.ServePortError`, and port 0 picks a free
one (:attr:`ServerRunner.url` tells which).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Final

from app.auth import KEYRING_SERVICE
from app.errors import ServeConfigError, ServePortError

if TYPE_CHECKING:
    import uvicorn

    from app.serve.app import ServeState

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8000
KEYRING_USER: Final = "serve-api-key"
_START_TIMEOUT_S: Final = 15.0
_GRACEFUL_STOP_S: Final = 2


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_api_key(env_var: str | None) -> str | None:
    """The server's API key: from ``env_var`` when named (it must be set), else from the OS keyring;
    None when there is none."""
    if env_var:
        value = os.environ.get(env_var, "").strip()
        if not value:
            raise ServeConfigError(
                f"The environment variable {env_var} is not set (or is empty).",
                f"Export the API key in it first, e.g. export {env_var}=...",
            )
        return value
    try:
        import keyring

        stored = keyring.get_password(KEYRING_SERVICE, KEYRING_USER)
    except Exception:  # no keyring backend at all means "no key"
        return None
    return stored.strip() if stored else None


def check_bind(host: str, has_key: bool) -> None:
    """Refuse to serve beyond this machine without an API key."""
    if not is_loopback(host) and not has_key:
        raise ServeConfigError(
            f"Serving on {host} would let other machines use the model, and no API key is set.",
            "Set one with --api-key-env VAR (or in the OS keyring: service QuantDesk, user "
            f"{KEYRING_USER}), or serve on {DEFAULT_HOST}.",
        )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ServePortError(
            f"Cannot listen on {host}:{port}: {exc.strerror or exc}.",
            "Another program may use the port: choose another with --port.",
        ) from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


class ServerRunner:
    """uvicorn serving one :class:`ServeState` on a background thread."""

    def __init__(self, state: ServeState, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        self.state = state
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        """The base URL clients use (``http://host:port/v1``)."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        """Whether the server thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> str:
        """Bind, start serving and return the URL; ServeConfigError/ServePortError when it may not."""
        import uvicorn

        from app.serve.app import create_app

        check_bind(self.host, self.state.requires_key)
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self.state),
            log_config=None,  # quiet: uvicorn must not configure logging or print to stdout
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=_GRACEFUL_STOP_S,
        )
        server = uvicorn.Server(config)
        self._server = server

        def serve() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # reported by start(); a thread must not die silently
                self._failure = exc
            finally:
                sock.close()

        self._thread = threading.Thread(target=serve, name="quantdesk-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not server.started:
            self.stop()
            raise ServePortError(
                f"The server could not start on {self.host}:{self.port}.",
                "Try another --port.",
                detail=repr(self._failure) if self._failure else "",
            )
        return self.url

    def stop(self) -> None:
        """Stop generating, close the connections and end the thread."""
        self.state.cancel_all()
        server = self._server
        if server is not None:
            server.should_exit = True
        if self._thread is not None:
            with contextlib.suppress(RuntimeError):
                self._thread.join(_GRACEFUL_STOP_S + 3)
        self._thread = None
