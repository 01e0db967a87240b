"""Resumable, checksum-verified downloads (HTTP Range), and the MSD task archives.

A download streams into ``<dest>.part``; an interrupted transfer resumes from the bytes already there (retries in
the same call, or a later call), a finished one is verified (sha256 and/or md5) and only then renamed onto ``dest``
atomically, so ``dest`` is never a partial or unverified file. A checksum mismatch or an HTTP error removes the
partial file.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["download", "download_msd_task", "file_digest", "MSD_TASKS"]

# MONAI's mirror of the Medical Segmentation Decathlon archives and their md5, as used by monai.apps.DecathlonDataset
# (the official release is on Google Drive, which has no stable direct links).
_MSD_MIRROR = "https://msd-for-monai.s3-us-west-2.amazonaws.com/{task}.tar"
MSD_TASKS: dict[str, str] = {
    "Task01_BrainTumour": "240a19d752f0d9e9101544901065d872",
    "Task02_Heart": "06ee59366e1e5124267b774dbd654057",
    "Task03_Liver": "a90ec6c4aa7f6a3d087205e23d4e6397",
    "Task04_Hippocampus": "9d24dba78a72977dbd1d2e110310f31b",
    "Task05_Prostate": "35138f08b1efaef89d7424d2bcc928db",
    "Task06_Lung": "8afd997733c7fc0432f71255ba4e52dc",
    "Task07_Pancreas": "4f7080cfca169fa8066d17ce6eb061e4",
    "Task08_HepaticVessel": "641d79e80ec66453921d997fbf12a29c",
    "Task09_Spleen": "410d4a301da4e5b2f6f86ec3ddba524e",
    "Task10_Colon": "bad7a188931dc2f6acf72b08eb6202d0",
}
_RETRYABLE = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError)


class _Incomplete(OSError):
    """The server closed the connection before sending all the bytes it announced."""


def file_digest(path: str | Path, algorithm: str, chunk_size: int = 1 << 20) -> str:
    """Hex digest of a file, streamed (``algorithm`` is a hashlib name such as ``sha256`` or ``md5``)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, sha256: str | None, md5: str | None) -> str | None:
    """None when every given checksum matches, else a description of the mismatch."""
    for algo, want in (("sha256", sha256), ("md5", md5)):
        if want:
            got = file_digest(path, algo)
            if got.lower() != want.lower():
                return f"{algo} expected {want.lower()}, got {got}"
    return None


def _fetch(url: str, part: Path, timeout: float, chunk_size: int, progress: bool) -> None:
    """One HTTP request: continue ``part`` from its size with a Range request (restart if the server ignores it)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "segzoo", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left to send: the partial file may already be complete
            return
        raise
    with resp:
        if offset and resp.status == 206 and resp.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            mode = "ab"
        else:  # no Range support (200) or an unexpected range: start again from byte 0
            mode, offset = "wb", 0
        length = resp.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        bar = None
        if progress:
            from tqdm import tqdm
            total = offset + expected if expected is not None else None
            bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=part.name[:-5], leave=False)
        written = 0
        try:
            with open(part, mode) as f:
                while chunk := resp.read(chunk_size):
                    f.write(chunk)
                    written += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        if expected is not None and written < expected:
            raise _Incomplete(f"connection closed after {written} of {expected} bytes")


def download(url: str, dest: str | Path, *, sha256: str | None = None, md5: str | None = None, retries: int = 3,
             timeout: float = 60.0, chunk_size: int = 1 << 20, backoff: float = 1.0, progress: bool = False) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify the given checksums, rename atomically.

    An existing ``dest`` that matches the checksums (or any existing ``dest`` when none is given) is kept as is.
    Network interruptions are retried ``retries`` times, each resuming where the last stopped; when they are
    exhausted the partial file is kept so that a later call resumes it.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    if dest.is_file() and _verify(dest, sha256, md5) is None:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, timeout, chunk_size, progress)
            break
        except urllib.error.HTTPError as e:
            if e.code < 500 or attempt == retries:  # client errors are final; server errors are retried
                part.unlink(missing_ok=True)
                raise ConnectionError(f"download of {url} failed: HTTP {e.code} {e.reason}") from e
            time.sleep(backoff * (attempt + 1))
        except _RETRYABLE as e:
            if attempt == retries:
                kept = part.stat().st_size if part.exists() else 0
                raise ConnectionError(f"download of {url} failed after {retries + 1} attempt(s): {e}; "
                                      f"{kept} bytes kept in {part}, call again to resume") from e
            time.sleep(backoff * (attempt + 1))
    if not part.exists():
        raise ConnectionError(f"download of {url} produced no data")
    mismatch = _verify(part, sha256, md5)
    if mismatch is not None:
        part.unlink()
        raise ValueError(f"checksum mismatch for {url}: {mismatch}; the downloaded file was removed")
    os.replace(part, dest)
    return dest


def _safe_extract(archive: Path, root: Path) -> None:
    """Extract a tar archive under ``root``, refusing absolute paths, ``..`` escapes, links and device files."""
    root = root.resolve()
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for m in members:
            target = (root / m.name).resolve()
            if not (target == root or root in target.parents) or not (m.isfile() or m.isdir()):
                raise ValueError(f"refusing to extract {m.name!r} from {archive}: outside {root} or not a plain file")
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(root, members=members, **kwargs)


def download_msd_task(task: str, root: str | Path, *, url: str | None = None, md5: str | None = None,
                      keep_archive: bool = False, progress: bool = True) -> Path:
    """Download and extract one MSD task into ``root/<task>`` (md5-verified); returns that folder.

    Does nothing when ``root/<task>/dataset.json`` already exists. ``url``/``md5`` override the MONAI mirror.
    """
    if task not in MSD_TASKS and (url is None or md5 is None):
        raise ValueError(f"unknown MSD task {task!r}; known: {sorted(MSD_TASKS)} (or give url= and md5=)")
    root = Path(root)
    folder = root / task
    if (folder / "dataset.json").is_file():
        return folder
    archive = download(url or _MSD_MIRROR.format(task=task), root / f"{task}.tar", md5=md5 or MSD_TASKS[task],
                       progress=progress)
    _safe_extract(archive, root)
    if not (folder / "dataset.json").is_file():
        raise ValueError(f"{archive} did not contain {task}/dataset.json")
    if not keep_archive:
        archive.unlink()
    return folder
