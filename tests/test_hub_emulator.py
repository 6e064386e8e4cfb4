"""Tests of the local Hub emulator, driven by the real huggingface_hub client and by raw HTTP.

Everything else in the suite trusts the emulator to behave like the Hub; these tests pin that down.
"""

from __future__ import annotations

import os

# Read by huggingface_hub at import: keeps it from contacting huggingface.co for telemetry.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import hashlib
import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.hub_emulator import Faults, HubEmulator, LoggedRequest

REPO = "org/model"
GATED = "org/gated"
BRANCH = "gptq-4bit-32g-actorder_True"
GRANTED_TOKEN = "hf_granted"
OTHER_TOKEN = "hf_other"


def _write(path: Path, data: bytes) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Build the repo tree once; returns the contents of org/model@main by path."""
    root = tmp_path_factory.mktemp("hub")
    main = root / "org" / "model" / "main"
    contents = {
        "README.md": b"# Test model\n",
        "config.json": b'{"model_type": "llama"}\n',
        "sub/nested/deep.txt": b"deep file\n",
        "big.txt": bytes(range(256)) * 400,  # 102400 bytes of non-LFS content served by the hub itself
        "model.safetensors": os.urandom(300_000),
    }
    for rel, data in contents.items():
        _write(main / rel, data)
    _write(root / "org" / "model" / BRANCH / "config.json", b'{"bits": 4}\n')
    _write(root / "org" / "model" / BRANCH / "model.safetensors", os.urandom(1000))
    _write(root / "org" / "gated" / "main" / "config.json", b"{}\n")
    _write(root / "org" / "gated" / "main" / "model.safetensors", os.urandom(5000))
    _write(root / "org" / "gated" / "repo.json", b'{"gated": true}')
    _write(root / "org" / "mutable" / "main" / "weights.txt", b"v1")
    contents["__root__"] = str(root).encode()
    return contents


@pytest.fixture(scope="module")
def module_emu(files: dict[str, bytes]) -> Iterator[HubEmulator]:
    """One emulator for the module, with a tiny tree page size so paging is exercised."""
    root = Path(files["__root__"].decode())
    with HubEmulator(root, tokens={GRANTED_TOKEN: [GATED], OTHER_TOKEN: []}, tree_page_size=2) as emulator:
        yield emulator


@pytest.fixture
def emu(module_emu: HubEmulator) -> Iterator[HubEmulator]:
    """The module emulator, with faults and the request log reset around each test."""
    module_emu.reset()
    yield module_emu
    module_emu.reset()


@pytest.fixture
def api(emu: HubEmulator) -> HfApi:
    # token=False: never send a token a developer may have stored locally.
    return HfApi(endpoint=emu.endpoint, token=False)


def _connect(url: str) -> tuple[http.client.HTTPConnection, str]:
    """A fresh connection to the URL's server, and the request target (path + query)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    return conn, parts.path + (f"?{parts.query}" if parts.query else "")


def _raw_get(
    url: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[http.client.HTTPResponse, bytes]:
    conn, target = _connect(url)
    conn.request(method, target, headers=headers or {})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response, body


def _resolve_url(emu: HubEmulator, path: str, repo: str = REPO, revision: str = "main") -> str:
    return f"{emu.endpoint}/{repo}/resolve/{revision}/{path}"


def _logged(emu: HubEmulator, server: str, path_part: str) -> list[LoggedRequest]:
    return [r for r in emu.requests if r.server == server and path_part in r.path]


# -- API endpoints through huggingface_hub --------------------------------------------------------------


def test_list_repo_refs_reports_every_branch_with_its_commit(emu: HubEmulator, api: HfApi) -> None:
    refs = api.list_repo_refs(REPO, include_pull_requests=True)
    by_name = {b.name: b for b in refs.branches}
    assert set(by_name) == {"main", BRANCH}
    assert by_name["main"].target_commit == emu.commit_of(REPO, "main")
    assert by_name[BRANCH].ref == f"refs/heads/{BRANCH}"
    assert by_name[BRANCH].target_commit == emu.commit_of(REPO, BRANCH)
    assert emu.commit_of(REPO, "main") != emu.commit_of(REPO, BRANCH)
    assert refs.pull_requests == [] and refs.tags == [] and refs.converts == []


def test_model_info_for_default_branch_revision_and_commit(
    emu: HubEmulator, api: HfApi, files: dict[str, bytes]
) -> None:
    info = api.model_info(REPO)
    assert info.id == REPO
    assert info.sha == emu.commit_of(REPO, "main")
    assert info.gated is False
    assert info.siblings is not None
    assert sorted(s.rfilename for s in info.siblings) == sorted(k for k in files if k != "__root__")

    branch_info = api.model_info(REPO, revision=BRANCH)
    assert branch_info.sha == emu.commit_of(REPO, BRANCH)
    assert branch_info.siblings is not None
    assert {s.rfilename for s in branch_info.siblings} == {"config.json", "model.safetensors"}
    assert api.model_info(REPO, revision=branch_info.sha).sha == branch_info.sha

    with_blobs = api.model_info(REPO, files_metadata=True)
    assert with_blobs.siblings is not None
    lfs = {s.rfilename: s.lfs for s in with_blobs.siblings}
    assert lfs["config.json"] is None
    model_lfs = lfs["model.safetensors"]
    assert model_lfs is not None
    assert model_lfs.sha256 == hashlib.sha256(files["model.safetensors"]).hexdigest()

    assert api.model_info(GATED).gated == "manual"  # metadata is public even for gated repos


def test_list_repo_tree_pages_through_all_entries(
    emu: HubEmulator, api: HfApi, files: dict[str, bytes]
) -> None:
    entries = list(api.list_repo_tree(REPO, recursive=True))
    paths = [e.path for e in entries]
    expected_files = sorted(k for k in files if k != "__root__")
    assert sorted(p for p in paths if p not in ("sub", "sub/nested")) == expected_files
    assert {"sub", "sub/nested"} <= set(paths)
    assert len(paths) == len(set(paths)) == len(expected_files) + 2
    # page size 2 -> ceil(7 / 2) = 4 requests, all but the first following the Link header's cursor
    tree_requests = _logged(emu, "hub", "/tree/")
    assert len(tree_requests) == 4
    assert all("cursor" in r.query for r in tree_requests[1:])

    by_path = {e.path: e for e in entries}
    model = by_path["model.safetensors"]
    data = files["model.safetensors"]
    assert getattr(model, "lfs", None) is not None
    assert model.lfs.sha256 == hashlib.sha256(data).hexdigest()  # type: ignore[union-attr]
    assert model.lfs.size == model.size == len(data)  # type: ignore[union-attr]
    git_oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert model.blob_id == git_oid  # type: ignore[union-attr]
    assert getattr(by_path["config.json"], "lfs", "missing") is None


def test_list_repo_tree_one_level_subfolder_and_expand(emu: HubEmulator, api: HfApi) -> None:
    top = {e.path: type(e).__name__ for e in api.list_repo_tree(REPO)}
    assert top == {
        "README.md": "RepoFile",
        "big.txt": "RepoFile",
        "config.json": "RepoFile",
        "model.safetensors": "RepoFile",
        "sub": "RepoFolder",
    }
    nested = list(api.list_repo_tree(REPO, path_in_repo="sub/nested", expand=True))
    assert [e.path for e in nested] == ["sub/nested/deep.txt"]
    assert nested[0].last_commit is not None
    assert nested[0].last_commit.oid == emu.commit_of(REPO, "main")
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(REPO, path_in_repo="no/such/dir"))


def test_get_paths_info_answers_existing_files_and_folders(api: HfApi) -> None:
    infos = api.get_paths_info(REPO, ["config.json", "sub", "missing.txt", "model.safetensors"])
    assert [(i.path, type(i).__name__) for i in infos] == [
        ("config.json", "RepoFile"),
        ("sub", "RepoFolder"),
        ("model.safetensors", "RepoFile"),
    ]
    branch_infos = api.get_paths_info(REPO, ["config.json"], revision=BRANCH)
    assert branch_infos[0].size == len(b'{"bits": 4}\n')  # type: ignore[union-attr]


# -- downloads --------------------------------------------------------------------------------------------


def test_hf_hub_download_small_and_lfs_file(
    emu: HubEmulator, files: dict[str, bytes], tmp_path: Path
) -> None:
    small = hf_hub_download(
        REPO, "sub/nested/deep.txt", endpoint=emu.endpoint, cache_dir=tmp_path, token=False
    )
    assert Path(small).read_bytes() == files["sub/nested/deep.txt"]
    assert f"/snapshots/{emu.commit_of(REPO, 'main')}/" in Path(small).as_posix()

    big = hf_hub_download(REPO, "model.safetensors", endpoint=emu.endpoint, cache_dir=tmp_path, token=False)
    assert Path(big).read_bytes() == files["model.safetensors"]
    sha256 = hashlib.sha256(files["model.safetensors"]).hexdigest()
    heads = [r for r in _logged(emu, "hub", "/resolve/main/model.safetensors") if r.method == "HEAD"]
    assert [r.status for r in heads] == [302]
    cdn_gets = _logged(emu, "cdn", f"/blobs/{sha256}")
    assert [(r.method, r.status, r.bytes_sent) for r in cdn_gets] == [("GET", 200, 300_000)]
    assert "authorization" not in cdn_gets[0].headers

    branch_file = hf_hub_download(
        REPO, "config.json", revision=BRANCH, endpoint=emu.endpoint, cache_dir=tmp_path, token=False
    )
    assert Path(branch_file).read_bytes() == b'{"bits": 4}\n'


def test_hf_hub_download_resumes_after_a_truncated_cdn_body(
    emu: HubEmulator, files: dict[str, bytes], tmp_path: Path
) -> None:
    emu.faults = Faults(server="cdn", cut_after_bytes=100_000, cut_mode="fin")
    path = hf_hub_download(REPO, "model.safetensors", endpoint=emu.endpoint, cache_dir=tmp_path, token=False)
    assert Path(path).read_bytes() == files["model.safetensors"]
    cdn = _logged(emu, "cdn", "/blobs/")
    assert cdn[0].bytes_sent == 100_000
    assert len(cdn) == 2  # the client retried once; cut_times=1 let the second one through


def test_get_hf_file_metadata_for_lfs_and_regular_files(emu: HubEmulator, files: dict[str, bytes]) -> None:
    commit = emu.commit_of(REPO, "main")
    lfs = get_hf_file_metadata(hf_hub_url(REPO, "model.safetensors", endpoint=emu.endpoint), token=False)
    assert lfs.size == 300_000
    assert lfs.etag == hashlib.sha256(files["model.safetensors"]).hexdigest()
    assert lfs.commit_hash == commit
    assert lfs.location.startswith(f"{emu.cdn_endpoint}/blobs/")

    data = files["config.json"]
    regular = get_hf_file_metadata(hf_hub_url(REPO, "config.json", endpoint=emu.endpoint), token=False)
    assert regular.size == len(data)
    assert regular.etag == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert regular.commit_hash == commit


# -- errors and auth --------------------------------------------------------------------------------------


def test_errors_are_typed_like_the_real_hub(emu: HubEmulator, api: HfApi, tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/does-not-exist")
    with pytest.raises(RepositoryNotFoundError):
        api.list_repo_refs("org/does-not-exist")
    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(
            REPO, "config.json", revision="0" * 40, endpoint=emu.endpoint, cache_dir=tmp_path, token=False
        )
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "missing.bin", endpoint=emu.endpoint, cache_dir=tmp_path, token=False)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/nope", "config.json", endpoint=emu.endpoint, cache_dir=tmp_path, token=False)

    response, body = _raw_get(f"{emu.endpoint}/api/unknown/route")
    assert response.status == 404
    assert "error" in json.loads(body)


def test_gated_repo_requires_a_granted_token(
    emu: HubEmulator, files: dict[str, bytes], tmp_path: Path
) -> None:
    def download(token: str | bool) -> str:
        return hf_hub_download(
            GATED, "model.safetensors", endpoint=emu.endpoint, cache_dir=tmp_path, token=token
        )

    with pytest.raises(GatedRepoError) as anonymous:
        download(False)
    assert anonymous.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as not_granted:
        download(OTHER_TOKEN)
    assert not_granted.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as bogus:
        download("hf_bogus")
    assert bogus.value.response.status_code == 401
    assert not isinstance(bogus.value, (GatedRepoError, RepositoryNotFoundError))

    assert len(Path(download(GRANTED_TOKEN)).read_bytes()) == 5000
    # The CDN request must not carry the token (cross-origin redirect), the hub request must.
    assert _logged(emu, "hub", "/resolve/")[-1].headers["authorization"] == f"Bearer {GRANTED_TOKEN}"
    assert "authorization" not in _logged(emu, "cdn", "/blobs/")[-1].headers

    with pytest.raises(HfHubHTTPError) as bogus_api:
        HfApi(endpoint=emu.endpoint, token="hf_bogus").model_info(REPO)
    assert bogus_api.value.response.status_code == 401
    assert (
        bogus_api.value.response.headers["X-Error-Message"] == "Invalid credentials in Authorization header"
    )


# -- raw HTTP: ranges and faults --------------------------------------------------------------------------


def test_range_requests_on_hub_and_cdn(emu: HubEmulator, files: dict[str, bytes]) -> None:
    data = files["big.txt"]
    url = _resolve_url(emu, "big.txt")
    response, body = _raw_get(url, {"Range": "bytes=10-19"})
    assert (response.status, body) == (206, data[10:20])
    assert response.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    response, body = _raw_get(url, {"Range": "bytes=100000-"})
    assert (response.status, body) == (206, data[100_000:])
    response, body = _raw_get(url, {"Range": "bytes=-5"})
    assert (response.status, body) == (206, data[-5:])
    response, _ = _raw_get(url, {"Range": f"bytes={len(data)}-"})
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{len(data)}"

    response, _ = _raw_get(_resolve_url(emu, "model.safetensors"))
    assert response.status == 302
    location = response.headers["Location"]
    assert location.startswith(emu.cdn_endpoint)
    response, body = _raw_get(location, {"Range": "bytes=299990-"})
    assert (response.status, body) == (206, files["model.safetensors"][299_990:])
    assert response.headers["ETag"] == f'"{hashlib.sha256(files["model.safetensors"]).hexdigest()}"'
    assert response.headers["Accept-Ranges"] == "bytes"


def test_cut_fin_truncates_the_body_once(emu: HubEmulator, files: dict[str, bytes]) -> None:
    emu.faults = Faults(path_contains="big.txt", cut_after_bytes=1234)
    conn, target = _connect(_resolve_url(emu, "big.txt"))
    conn.request("GET", target)
    response = conn.getresponse()
    assert response.getheader("Content-Length") == str(len(files["big.txt"]))
    with pytest.raises(http.client.IncompleteRead) as cut:
        response.read()
    assert len(cut.value.partial) == 1234
    assert cut.value.partial == files["big.txt"][:1234]
    conn.close()
    assert _logged(emu, "hub", "big.txt")[-1].bytes_sent == 1234

    response, body = _raw_get(_resolve_url(emu, "big.txt"))  # cut_times=1: the next one is whole
    assert (response.status, body) == (200, files["big.txt"])


def test_cut_rst_resets_the_connection(emu: HubEmulator) -> None:
    emu.faults = Faults(
        server="hub", path_contains="big.txt", cut_after_bytes=1000, cut_mode="rst", cut_times=None
    )
    for _ in range(2):  # cut_times=None: every response is cut
        conn, target = _connect(_resolve_url(emu, "big.txt"))
        with pytest.raises(ConnectionResetError):
            conn.request("GET", target)
            conn.getresponse().read()
        conn.close()


def test_fail_first_answers_errors_then_succeeds(emu: HubEmulator) -> None:
    emu.faults = Faults(path_contains="config.json", fail_first=2)
    statuses = [_raw_get(_resolve_url(emu, "config.json"))[0].status for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert _raw_get(_resolve_url(emu, "README.md"))[0].status == 200  # other paths are not affected
    emu.faults = Faults(fail_first=1, fail_status=500, server="cdn")
    assert _raw_get(_resolve_url(emu, "README.md"))[0].status == 200  # hub not affected


def test_throttle_and_latency_slow_down_matching_requests(emu: HubEmulator, files: dict[str, bytes]) -> None:
    url = _resolve_url(emu, "big.txt")
    emu.faults = Faults(path_contains="big.txt", throttle_bps=200_000)
    start = time.monotonic()
    _, body = _raw_get(url)
    assert time.monotonic() - start >= 0.4  # 102400 bytes at 200 kB/s is ~0.51 s
    assert body == files["big.txt"]

    emu.faults = Faults(latency_s=0.3, server="hub")
    start = time.monotonic()
    response, _ = _raw_get(url, method="HEAD")
    assert response.status == 200
    assert time.monotonic() - start >= 0.3


def test_link_cap_is_shared_by_all_connections(emu: HubEmulator, files: dict[str, bytes]) -> None:
    """Four connections on a 400 kB/s link take as long as one would: more connections gain nothing."""
    import threading

    url = _resolve_url(emu, "big.txt")
    emu.link_bps = 400_000
    bodies: list[bytes] = []
    start = time.monotonic()

    def fetch(offset: int) -> None:
        bodies.append(_raw_get(url, {"Range": f"bytes={offset}-"})[1])

    threads = [threading.Thread(target=fetch, args=(i * 25600,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 25600 + 51200 + 76800 + 102400 = 256000 bytes at 400 kB/s: at least ~0.64 s
    assert time.monotonic() - start >= 0.55
    assert sorted(len(b) for b in bodies) == [25_600, 51_200, 76_800, 102_400]
    emu.reset()
    assert emu.link_bps is None


def test_faults_can_single_out_one_range(emu: HubEmulator, files: dict[str, bytes]) -> None:
    url = _resolve_url(emu, "big.txt")
    emu.faults = Faults(path_contains="big.txt", covering=50_000, fail_first=5)
    assert _raw_get(url, {"Range": "bytes=0-9999"})[0].status == 206  # does not cover byte 50 000
    assert _raw_get(url, {"Range": "bytes=40000-59999"})[0].status == 503
    assert _raw_get(url, {"Range": "bytes=50000-"})[0].status == 503
    assert _raw_get(url)[0].status == 503  # no Range: the whole body covers it
    emu.faults = Faults(path_contains="big.txt", ranged_only=True, fail_first=1)
    assert _raw_get(url)[0].status == 200
    assert _raw_get(url, {"Range": "bytes=0-9"})[0].status == 503


def test_ignore_range_answers_the_whole_body(emu: HubEmulator, files: dict[str, bytes]) -> None:
    emu.faults = Faults(path_contains="big.txt", ignore_range=True)
    response, body = _raw_get(_resolve_url(emu, "big.txt"), {"Range": "bytes=10-19"})
    assert (response.status, body) == (200, files["big.txt"])


def test_stall_holds_one_answer_then_continues(emu: HubEmulator, files: dict[str, bytes]) -> None:
    emu.faults = Faults(path_contains="big.txt", stall_after_bytes=1000, stall_s=0.5)
    start = time.monotonic()
    _, body = _raw_get(_resolve_url(emu, "big.txt"))
    assert time.monotonic() - start >= 0.45 and body == files["big.txt"]
    _raw_get(_resolve_url(emu, "big.txt"))  # stall_times=1: the next answer flows
    assert emu._counters.stalled == 1


def test_commit_changes_when_a_file_changes(
    emu: HubEmulator, files: dict[str, bytes], tmp_path: Path
) -> None:
    root = Path(files["__root__"].decode())
    before = emu.commit_of("org/mutable", "main")
    assert emu.commit_of("org/mutable", "main") == before  # deterministic
    (root / "org" / "mutable" / "main" / "weights.txt").write_bytes(b"v2")
    after = emu.commit_of("org/mutable", "main")
    assert after != before
    api = HfApi(endpoint=emu.endpoint, token=False)
    assert api.list_repo_refs("org/mutable").branches[0].target_commit == after
    path = hf_hub_download(
        "org/mutable", "weights.txt", endpoint=emu.endpoint, cache_dir=tmp_path, token=False
    )
    assert Path(path).read_bytes() == b"v2"


def test_reset_clears_log_and_faults(emu: HubEmulator) -> None:
    emu.faults = Faults(fail_first=5)
    assert _raw_get(_resolve_url(emu, "README.md"))[0].status == 503
    assert len(emu.requests) == 1
    emu.reset()
    assert emu.requests == [] and emu.faults == Faults()
    assert _raw_get(_resolve_url(emu, "README.md"))[0].status == 200


def test_stop_is_prompt_with_an_idle_keep_alive_connection(files: dict[str, bytes]) -> None:
    emulator = HubEmulator(Path(files["__root__"].decode())).start()
    conn, _ = _connect(emulator.endpoint)
    conn.request("GET", "/api/models/org/model/refs")
    assert conn.getresponse().read()  # connection stays open (HTTP/1.1 keep-alive)
    start = time.monotonic()
    emulator.stop()
    assert time.monotonic() - start < 2
    with pytest.raises(OSError):  # the listening socket is closed
        socket.create_connection(("127.0.0.1", urlsplit(emulator.endpoint).port or 0), timeout=1).close()
    conn.close()
