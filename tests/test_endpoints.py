"""Saved endpoints: JSON in the config dir (atomic), API keys only in the OS keyring."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend

from app.cli import main
from app.errors import EndpointAuthError, EndpointConfigError
from app.paths import app_paths
from app.remote import endpoints
from app.remote.endpoints import (
    KEEP_KEY,
    Endpoint,
    EndpointStore,
    TemplateMode,
    keyring_user,
    normalize_base_url,
    read_api_key,
    template_choice,
)
from tests.remote_fixtures import (
    Recorded,
    ScriptedServer,
    chat_chunk,
    models_answer,
    send_json,
    sse,
    start_sse,
)

SECRET = "sk-very-secret-0123456789"


class MemoryKeyring(KeyringBackend):
    """A keyring in a dict (the tests' null keyring stores nothing)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.store.pop((service, username), None)


class BrokenKeyring(MemoryKeyring):
    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.NoKeyringError("no backend")


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(previous)


def _files_text(root: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


def test_save_list_update_delete(memory_keyring: MemoryKeyring, isolated_home: Path) -> None:
    store = EndpointStore()
    assert store.path == app_paths().config_dir / "endpoints.json" and store.endpoints() == []
    gpu = Endpoint("GPU box", "http://gpu-box:8000/v1/", "TheBloke/Llama-2-70B-GPTQ")
    saved = store.save(gpu, api_key=SECRET)
    assert saved.base_url == "http://gpu-box:8000/v1"
    store.save(Endpoint("local llama", "http://127.0.0.1:8080", template_mode=TemplateMode.QUANTDESK))
    assert [e.name for e in store.endpoints()] == ["GPU box", "local llama"]
    # The key is in the keyring, under the endpoint's name, and in no file QuantDesk wrote.
    assert memory_keyring.store[("QuantDesk", keyring_user("GPU box"))] == SECRET
    assert SECRET not in _files_text(isolated_home)
    assert read_api_key(store.get("gpu BOX")) == SECRET
    data = json.loads(store.path.read_text())
    assert data["version"] == 1 and data["endpoints"][0]["model"] == "TheBloke/Llama-2-70B-GPTQ"
    assert not list(store.path.parent.glob(".endpoints.json.*")), "no temporary file is left behind"
    # Replace keeps the position and (by default) the key; None removes the key.
    store.save(Endpoint("GPU box", "http://gpu-box:9000/v1", "other"))
    assert (
        store.endpoints()[0].base_url == "http://gpu-box:9000/v1"
        and read_api_key(store.get("GPU box")) == SECRET
    )
    store.save(store.get("GPU box"), api_key=None)
    assert read_api_key(store.get("GPU box")) is None
    store.save(store.get("GPU box"), api_key=SECRET)
    assert store.delete("GPU box") and not store.delete("GPU box")
    assert ("QuantDesk", keyring_user("GPU box")) not in memory_keyring.store
    assert [e.name for e in store.endpoints()] == ["local llama"]


def test_api_key_env_wins_over_the_keyring(
    memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EndpointStore()
    endpoint = store.save(
        Endpoint("vllm", "https://vllm.example/v1", api_key_env="VLLM_KEY"), api_key="from-keyring"
    )
    monkeypatch.delenv("VLLM_KEY", raising=False)
    assert read_api_key(endpoint) == "from-keyring"
    monkeypatch.setenv("VLLM_KEY", "from-env")
    assert read_api_key(endpoint) == "from-env"
    assert "from-env" not in store.path.read_text() and "VLLM_KEY" in store.path.read_text()


def test_no_keyring_means_a_clear_error() -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(BrokenKeyring())
    try:
        with pytest.raises(EndpointConfigError, match="no OS keyring") as caught:
            EndpointStore().save(Endpoint("x", "http://h:1"), api_key=SECRET)
        assert SECRET not in caught.value.user_message + caught.value.detail
    finally:
        keyring.set_keyring(previous)
    assert read_api_key(Endpoint("x", "http://h:1")) is None  # the null keyring: no key, no crash


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("gpu-box:8000", "not an http"),
        ("ftp://h/v1", "not an http"),
        ("http://user:pw@h:8000/v1", "user name or password"),
        ("http://h:99999/v1", "not a valid URL"),
        ("http://h/v1?x=1", "query or fragment"),
    ],
)
def test_bad_base_urls(url: str, why: str) -> None:
    with pytest.raises(EndpointConfigError, match=why):
        normalize_base_url(url)


def test_corrupt_file_is_reported(isolated_home: Path) -> None:
    store = EndpointStore()
    store.path.parent.mkdir(parents=True, exist_ok=True)
    store.path.write_text(json.dumps({"endpoints": [{"name": "x", "base_url": "nope"}]}))
    with pytest.raises(EndpointConfigError, match="not an http") as caught:
        store.endpoints()
    assert str(store.path) in caught.value.hint
    store.path.write_text(json.dumps({"endpoints": [{"name": "x", "base_url": "nope"}]}))
    with pytest.raises(EndpointConfigError, match="not an http"):
        store.endpoints()


def test_keep_key_moves_with_a_case_only_rename(memory_keyring: MemoryKeyring) -> None:
    store = EndpointStore()
    store.save(Endpoint("gpu", "http://h:1"), api_key=SECRET)
    store.save(Endpoint("GPU", "http://h:1"), api_key=KEEP_KEY)
    assert [e.name for e in store.endpoints()] == ["GPU"]
    assert read_api_key(store.get("GPU")) == SECRET
    assert ("QuantDesk", keyring_user("gpu")) not in memory_keyring.store


def test_template_choice() -> None:
    server = template_choice(Endpoint("s", "http://h:1"))
    assert server.name == "server" and "server" in server.detail
    quantdesk = template_choice(
        Endpoint("q", "http://h:1", template_mode=TemplateMode.QUANTDESK, template="vicuna")
    )
    assert quantdesk.name == "Vicuna" and "endpoint" in quantdesk.detail
    assert template_choice(Endpoint("q", "http://h:1", template_mode=TemplateMode.QUANTDESK)).name == "ChatML"
    assert template_choice(Endpoint("s", "http://h:1"), "alpaca").name == "Alpaca"
    assert (
        template_choice(Endpoint("q", "http://h:1", template_mode=TemplateMode.QUANTDESK), "jinja").name
        == "server"
    )
    assert (
        template_choice(Endpoint("q", "http://h:1", template_mode=TemplateMode.QUANTDESK), "server").name
        == "server"
    )


def test_cli_uses_a_saved_endpoint_and_its_keyring_key(
    memory_keyring: MemoryKeyring, scripted_server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    def answer(record: Recorded, handler: BaseHTTPRequestHandler) -> None:
        if record.headers.get("Authorization") != f"Bearer {SECRET}":
            send_json(handler, 401, {"detail": "Invalid API key"})
        elif record.method == "GET":
            models_answer(handler, "m1", "m2")
        else:
            start_sse(handler)
            sse(handler, chat_chunk("Bonjour", finish="stop"))
            sse(handler, "[DONE]")

    scripted_server.script = answer
    EndpointStore().save(Endpoint("lab", scripted_server.base_url, model="m2"), api_key=SECRET)
    assert main(["chat", "--endpoint", "lab", "--prompt", "hi"]) == 0
    captured = capsys.readouterr()
    assert "Bonjour" in captured.out and "model m2" in captured.err
    assert scripted_server.requests[-1].body["model"] == "m2"
    assert SECRET not in captured.out + captured.err
    # Test connection with a typed key that is wrong: a typed error, and the key is nowhere in it.
    with pytest.raises(EndpointAuthError) as caught:
        endpoints.test_connection(EndpointStore().get("lab"), api_key="typo-key")
    assert "typo-key" not in caught.value.user_message + caught.value.detail
    report = endpoints.test_connection(EndpointStore().get("lab"))
    assert report.model_found and [m.id for m in report.models] == ["m1", "m2"]


@pytest.mark.parametrize(
    "content", [b"\xff\xfe not utf-8", b"{not json", b"[1, 2]", b'{"endpoints": 3}', b'{"endpoints": [1]}']
)
def test_a_damaged_endpoints_file_is_set_aside_with_one_sentence_and_the_store_works_again(
    content: bytes,
) -> None:
    store = EndpointStore()
    store.path.parent.mkdir(parents=True, exist_ok=True)
    store.path.write_bytes(content)
    with pytest.raises(EndpointConfigError) as info:
        store.endpoints()
    assert "set it aside" in info.value.user_message
    [aside] = [p for p in store.path.parent.iterdir() if p.name.startswith("endpoints.json.")]
    assert aside.read_bytes() == content  # kept byte for byte, never deleted
    assert store.endpoints() == []
    store.save(Endpoint("lab", "http://127.0.0.1:1"))
    assert [e.name for e in store.endpoints()] == ["lab"]
