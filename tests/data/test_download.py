"""The download helper against a loopback HTTP server with Range support, truncation and a Range-less mode."""
from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from zoo.data.download import download, download_msd_task, file_digest

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB, not a multiple of the chunk size


class _Server:
    """Serves ``files`` (path -> bytes); ``truncate`` maps a path to how many requests get cut at half the body."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: dict[str, int] = {}
        self.ignore_range = False
        self.ranges: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                server.ranges.append(self.headers.get("Range"))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start, rng = 0, self.headers.get("Range")
                if rng and not server.ignore_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                chunk = body[start:]
                self.send_header("Content-Length", str(len(chunk)))
                self.end_headers()
                if server.truncate.get(self.path, 0) > 0:
                    server.truncate[self.path] -= 1
                    self.wfile.write(chunk[: len(chunk) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(chunk)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    s.files["/data.bin"] = PAYLOAD
    yield s
    s.close()


SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


def test_good_transfer_verified(server: _Server, tmp_path: Path) -> None:
    out = download(f"{server.url}/data.bin", tmp_path / "sub" / "data.bin", sha256=SHA, md5=MD5, chunk_size=4096)
    assert out.read_bytes() == PAYLOAD
    assert not (tmp_path / "sub" / "data.bin.part").exists()
    assert server.ranges == [None]
    download(f"{server.url}/data.bin", out, sha256=SHA)  # already there and verified: no new request
    assert len(server.ranges) == 1
    out.write_bytes(b"stale")  # present but wrong: fetched again and replaced only once verified
    assert download(f"{server.url}/data.bin", out, sha256=SHA).read_bytes() == PAYLOAD and len(server.ranges) == 2


def test_checksum_mismatch_removes_file(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    with pytest.raises(ValueError, match="checksum mismatch.*sha256 expected 0+, got " + SHA):
        download(f"{server.url}/data.bin", dest, sha256="0" * 64)
    assert not dest.exists() and not (tmp_path / "data.bin.part").exists()
    with pytest.raises(ValueError, match="md5 expected"):
        download(f"{server.url}/data.bin", dest, md5="f" * 32)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_transfer_resumes_with_range(server: _Server, tmp_path: Path) -> None:
    server.truncate["/data.bin"] = 1
    dest = download(f"{server.url}/data.bin", tmp_path / "data.bin", sha256=SHA, backoff=0.0, chunk_size=4096)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges[0] is None
    assert server.ranges[1] == f"bytes={len(PAYLOAD) // 2}-"  # second request continues where the first stopped


def test_retries_exhausted_keep_partial_for_a_later_call(server: _Server, tmp_path: Path) -> None:
    server.truncate["/data.bin"] = 2
    dest = tmp_path / "data.bin"
    with pytest.raises(ConnectionError, match="after 2 attempt.*call again to resume"):
        download(f"{server.url}/data.bin", dest, sha256=SHA, retries=1, backoff=0.0)
    part = tmp_path / "data.bin.part"
    first = len(PAYLOAD) // 2
    assert not dest.exists() and part.stat().st_size == first + (len(PAYLOAD) - first) // 2
    download(f"{server.url}/data.bin", dest, sha256=SHA)
    assert dest.read_bytes() == PAYLOAD and not part.exists()
    assert server.ranges[-1] == f"bytes={first + (len(PAYLOAD) - first) // 2}-"


def test_server_without_range_support_restarts(server: _Server, tmp_path: Path) -> None:
    server.ignore_range = True
    (tmp_path / "data.bin.part").write_bytes(b"garbage that is not the file's start")
    dest = download(f"{server.url}/data.bin", tmp_path / "data.bin", md5=MD5)
    assert dest.read_bytes() == PAYLOAD


def test_complete_partial_file_is_verified_after_416(server: _Server, tmp_path: Path) -> None:
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    dest = download(f"{server.url}/data.bin", tmp_path / "data.bin", sha256=SHA)
    assert dest.read_bytes() == PAYLOAD and server.ranges == [f"bytes={len(PAYLOAD)}-"]


def test_http_error_is_clear(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(ConnectionError, match="HTTP 404"):
        download(f"{server.url}/missing.bin", tmp_path / "x.bin")
    assert list(tmp_path.iterdir()) == []


def _task_tar(task: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in ((f"{task}/dataset.json", b'{"labels": {"0": "background"}}'),
                           (f"{task}/imagesTr/a.nii.gz", b"not really nifti")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_download_msd_task_extracts_and_verifies(server: _Server, tmp_path: Path) -> None:
    body = _task_tar("Task99_Toy")
    server.files["/Task99_Toy.tar"] = body
    md5 = hashlib.md5(body).hexdigest()
    folder = download_msd_task("Task99_Toy", tmp_path, url=f"{server.url}/Task99_Toy.tar", md5=md5, progress=False)
    assert folder == tmp_path / "Task99_Toy" and (folder / "imagesTr" / "a.nii.gz").read_bytes() == b"not really nifti"
    assert not (tmp_path / "Task99_Toy.tar").exists()
    n = len(server.ranges)
    download_msd_task("Task99_Toy", tmp_path, url=f"{server.url}/Task99_Toy.tar", md5=md5)  # present: no request
    assert len(server.ranges) == n
    with pytest.raises(ValueError, match="unknown MSD task 'Task42_Nope'.*Task04_Hippocampus"):
        download_msd_task("Task42_Nope", tmp_path)


def test_msd_archive_with_path_escape_is_refused(server: _Server, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    server.files["/Task98_Bad.tar"] = buf.getvalue()
    root = tmp_path / "root"
    with pytest.raises(ValueError, match="refusing to extract '../evil.txt'"):
        download_msd_task("Task98_Bad", root, url=f"{server.url}/Task98_Bad.tar",
                          md5=hashlib.md5(buf.getvalue()).hexdigest(), progress=False)
    assert not (tmp_path / "evil.txt").exists()


def test_file_digest_matches_hashlib(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(PAYLOAD)
    assert file_digest(p, "sha256", chunk_size=1000) == SHA
