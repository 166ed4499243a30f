"""Ratings from MovieLens (offline from a PyPI wheel, or GroupLens) or any CSV, checked and de-duplicated.

Every reader returns the same `Ratings`: raw user/item ids (ints when every id is an integer, else strings),
float ratings, timestamps when the source has them, and optional item titles/genres and user attributes
(used as side features and in the example-recommendations table). Malformed files fail with a DataError that
names the file, the line and the fix.
"""
from __future__ import annotations

import csv
import io
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepsuite.common.data.cache import cache_root, ensure_writable
from deepsuite.common.data.sources import Source, first_available
from deepsuite.common.data.text_tables import decode_text
from deepsuite.common.errors import DataError

RECBOLE = "recbole==1.2.1"
RECBOLE_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.{}"
GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/{}.zip"
GROUPLENS_SETS = ("ml-100k", "ml-1m")
USER_ALIASES = ("user", "user_id", "userid", "uid", "customer_id")
ITEM_ALIASES = ("item", "item_id", "itemid", "movie_id", "movieid", "product_id", "iid")
RATING_ALIASES = ("rating", "score", "stars", "value")
TIME_ALIASES = ("timestamp", "time", "ts", "date", "datetime")


@dataclass
class Ratings:
    """One ratings data set, raw ids as stored in the source (ints when all are integers)."""

    name: str
    source: str
    users: np.ndarray                      # raw user ids
    items: np.ndarray                      # raw item ids
    ratings: np.ndarray                    # float32
    timestamps: np.ndarray | None = None   # int64 (seconds), None when the source has no times
    titles: dict = field(default_factory=dict)          # raw item id -> title
    genres: dict = field(default_factory=dict)          # raw item id -> list of genre tokens
    user_attributes: dict = field(default_factory=dict)  # raw user id -> list of tokens ("gender=M", ...)
    notes: list[str] = field(default_factory=list)      # what was done to the data (duplicates...)

    def __len__(self) -> int:
        return len(self.ratings)


# ------------------------------------------------------------------------------------------------
# Entry point


def load_ratings(source: str, items_csv: str | None = None, duplicates: str = "latest",
                 cache_dir: str | None = None, download: bool = True, encoding: str = "utf-8") -> Ratings:
    """Read `source` (see DataConfig.source), then apply the duplicate policy and basic checks."""
    if source == "movielens-100k":
        ratings, _ = first_available("movielens-100k", [
            Source("pypi:" + RECBOLE, lambda: _recbole_ml100k(cache_dir, download),
                   hint="needs `pip download` access to PyPI once; the wheel is cached"),
            Source("grouplens:ml-100k", lambda: _grouplens("ml-100k", cache_dir, download),
                   hint=f"or put ml-100k.zip in {cache_root(cache_dir) / 'grouplens'}"),
        ])
    elif source.startswith("grouplens:"):
        ratings = _grouplens(source.removeprefix("grouplens:"), cache_dir, download)
    elif source.startswith("csv:"):
        ratings = read_csv(Path(source.removeprefix("csv:")).expanduser(), encoding)
    else:
        raise DataError(f"data.source={source!r} is not a ratings source; use movielens-100k, grouplens:ml-100k, "
                        "grouplens:ml-1m or csv:<path to user,item,rating[,timestamp]>")
    if items_csv:
        ratings.titles, ratings.genres = read_items_csv(Path(items_csv).expanduser(), encoding)
    ratings = apply_duplicate_policy(ratings, duplicates)
    if len(ratings) < 10:
        raise DataError(f"{ratings.source}: only {len(ratings)} ratings; a recommender needs at least 10")
    return ratings


def apply_duplicate_policy(ratings: Ratings, policy: str) -> Ratings:
    """Repeated (user, item) rows: keep the latest (timestamp, then file order), average, or refuse."""
    keys = np.char.add(np.char.add(ratings.users.astype(str), "\x1f"), ratings.items.astype(str))
    _, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
    repeated = int((counts > 1).sum())
    if not repeated:
        return ratings
    extra = len(keys) - len(first)
    if policy == "error":
        example = keys[first[np.flatnonzero(counts > 1)[0]]].replace("\x1f", ", item ")
        raise DataError(f"{ratings.source}: {repeated} (user, item) pairs appear more than once ({extra} extra rows), "
                        f"e.g. user {example}; remove them or set data.duplicates=latest or mean")
    if policy == "mean":
        sums = np.bincount(inverse, weights=ratings.ratings)
        keep = np.sort(first)
        mean = (sums / counts).astype("float32")
        ratings.ratings = mean[inverse][keep]
        if ratings.timestamps is not None:
            latest = np.full(len(counts), np.iinfo(np.int64).min)
            np.maximum.at(latest, inverse, ratings.timestamps)
            ratings.timestamps = latest[inverse][keep]
        how = "averaged their ratings (latest timestamp kept)"
    else:
        order = np.arange(len(keys)) if ratings.timestamps is None else np.lexsort((np.arange(len(keys)), ratings.timestamps))
        position = np.empty(len(keys), dtype=np.int64)
        position[order] = np.arange(len(keys))          # each row's place in time order
        latest = np.full(len(counts), -1, dtype=np.int64)
        np.maximum.at(latest, inverse, position)
        keep = np.sort(order[latest])
        ratings.ratings = ratings.ratings[keep]
        if ratings.timestamps is not None:
            ratings.timestamps = ratings.timestamps[keep]
        how = "kept the latest row of each (by timestamp, then file order)"
    ratings.users, ratings.items = ratings.users[keep], ratings.items[keep]
    ratings.notes.append(f"duplicates: {repeated} (user, item) pairs had {extra} extra rows; {how}")
    return ratings


# ------------------------------------------------------------------------------------------------
# MovieLens 100K inside the recbole wheel (RecBole "atomic files": tab-separated, typed headers)


def _recbole_ml100k(cache_dir: str | None, download: bool) -> Ratings:
    from deepsuite.common.data.pypi_artifact import fetch_artifact, pypi_file

    root = cache_root(cache_dir)
    if not download:
        fetch = root / "pypi" / RECBOLE.replace("=", "_")
        if not (fetch.exists() and any(fetch.glob("*.whl"))):
            raise DataError(f"{RECBOLE} wheel not in the cache and data.download=false")
    fetch_artifact(RECBOLE, sdist=False, root=root)
    paths = {ext: pypi_file(RECBOLE, RECBOLE_MEMBER.format(ext), sdist=False, root=root)
             for ext in ("inter", "item", "user")}
    columns = read_atomic(paths["inter"])
    for needed in ("user_id", "item_id", "rating"):
        if needed not in columns:
            raise DataError(f"{paths['inter']}: no {needed!r} column (found {', '.join(columns)})")
    ratings = Ratings("movielens-100k", f"pypi:{RECBOLE}/{RECBOLE_MEMBER.format('inter')}",
                      _ids(columns["user_id"]), _ids(columns["item_id"]),
                      _numbers(columns["rating"], paths["inter"], "rating").astype("float32"),
                      _numbers(columns["timestamp"], paths["inter"], "timestamp").astype("int64")
                      if "timestamp" in columns else None)
    items = read_atomic(paths["item"])
    for raw, title, year, genres in zip(_ids(items["item_id"]), items["movie_title"],
                                        items.get("release_year", [""] * len(items["item_id"])), items["class"]):
        ratings.titles[raw] = f"{title} ({year})" if year else title
        ratings.genres[raw] = genres.split()
    users = read_atomic(paths["user"])
    for raw, age, gender, occupation in zip(_ids(users["user_id"]), users["age"], users["gender"], users["occupation"]):
        ratings.user_attributes[raw] = _user_tokens(age, gender, occupation)
    return ratings


def read_atomic(path: Path) -> dict[str, list[str]]:
    """A RecBole atomic file: header `name:type<TAB>...`, then tab-separated rows -> {name: column}."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        raise DataError(f"{path}: empty file")
    names = [column.split(":")[0] for column in lines[0].split("\t")]
    columns: dict[str, list[str]] = {name: [] for name in names}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(names):
            raise DataError(f"{path} line {number}: {len(cells)} fields, expected {len(names)} ({', '.join(names)})")
        for name, cell in zip(names, cells):
            columns[name].append(cell)
    return columns


def _user_tokens(age: str, gender: str, occupation: str) -> list[str]:
    tokens = [f"gender={gender}", f"occupation={occupation}"]
    try:
        tokens.append(f"age={min(int(float(age)) // 10, 6)}0s")
    except ValueError:
        pass
    return tokens


# ------------------------------------------------------------------------------------------------
# GroupLens zips (network), kept in the cache


def _grouplens(name: str, cache_dir: str | None, download: bool) -> Ratings:
    if name not in GROUPLENS_SETS:
        raise DataError(f"grouplens:{name} is not supported; use one of {', '.join(GROUPLENS_SETS)}")
    folder = ensure_writable(cache_root(cache_dir) / "grouplens", "cache")
    archive = folder / f"{name}.zip"
    if not archive.exists():
        if not download:
            raise DataError(f"{archive} is missing and data.download=false")
        url = GROUPLENS_URL.format(name)
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                payload = response.read()
        except OSError as exc:
            raise DataError(f"cannot download {url} ({getattr(exc, 'reason', exc)}); offline, use the default "
                            f"movielens-100k source or put {name}.zip into {folder}") from None
        archive.with_suffix(".part").write_bytes(payload)
        archive.with_suffix(".part").replace(archive)
    try:
        with zipfile.ZipFile(archive) as zf:
            read = lambda member: zf.read(f"{name}/{member}").decode("latin-1")  # noqa: E731
            return _ml100k_zip(read, archive) if name == "ml-100k" else _ml1m_zip(read, archive)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"{archive}: not a GroupLens {name} archive ({exc}); delete it to download again") from None


def _ml100k_zip(read, archive: Path) -> Ratings:
    rows = np.array([line.split("\t") for line in read("u.data").splitlines() if line.strip()])
    ratings = Ratings("movielens-100k", f"grouplens:{archive}", _ids(rows[:, 0]), _ids(rows[:, 1]),
                      rows[:, 2].astype("float32"), rows[:, 3].astype("int64"))
    genre_names = [line.split("|")[0] for line in read("u.genre").splitlines() if line.strip()]
    for line in read("u.item").splitlines():
        cells = line.split("|")
        if len(cells) < 5 + len(genre_names):
            continue
        raw = int(cells[0])
        ratings.titles[raw] = cells[1]
        ratings.genres[raw] = [g for g, flag in zip(genre_names, cells[5:]) if flag == "1" and g != "unknown"]
    for line in read("u.user").splitlines():
        cells = line.split("|")
        if len(cells) >= 4:
            ratings.user_attributes[int(cells[0])] = _user_tokens(cells[1], cells[2], cells[3])
    return ratings


def _ml1m_zip(read, archive: Path) -> Ratings:
    rows = np.array([line.split("::") for line in read("ratings.dat").splitlines() if line.strip()])
    ratings = Ratings("movielens-1m", f"grouplens:{archive}", _ids(rows[:, 0]), _ids(rows[:, 1]),
                      rows[:, 2].astype("float32"), rows[:, 3].astype("int64"))
    for line in read("movies.dat").splitlines():
        cells = line.split("::")
        if len(cells) == 3:
            ratings.titles[int(cells[0])] = cells[1]
            ratings.genres[int(cells[0])] = cells[2].split("|")
    for line in read("users.dat").splitlines():
        cells = line.split("::")
        if len(cells) >= 4:
            ratings.user_attributes[int(cells[0])] = [f"gender={cells[1]}", f"age={cells[2]}", f"occupation={cells[3]}"]
    return ratings


# ------------------------------------------------------------------------------------------------
# CSV


def read_csv(path: Path, encoding: str = "utf-8") -> Ratings:
    """user,item,rating[,timestamp], with a header naming them (common aliases accepted) or none at all."""
    rows = _csv_rows(path, encoding)
    columns, has_header = csv_layout(rows[0], path)
    body, first_line = (rows[1:], 2) if has_header else (rows, 1)
    if not body:
        raise DataError(f"{path}: no rating rows after the header")
    needed = max(columns["user"], columns["item"], columns["rating"]) + 1
    for number, row in enumerate(body, start=first_line):
        if len(row) < needed:
            raise DataError(f"{path} line {number}: {len(row)} field(s), expected user,item,rating[,timestamp]")
    has_time = columns["timestamp"] is not None and all(len(row) > columns["timestamp"] for row in body)
    column = lambda key: [row[columns[key]].strip() for row in body]  # noqa: E731
    ratings = Ratings(path.stem, f"csv:{path}", _ids(column("user")), _ids(column("item")),
                      _numbers(column("rating"), path, "rating", first_line).astype("float32"),
                      _times(column("timestamp"), path, first_line) if has_time else None)
    if not has_time:
        ratings.notes.append("no timestamp column: file order stands in for time (temporal split, duplicates)")
    return ratings


def csv_layout(first_row: list[str], path: Path) -> tuple[dict[str, int | None], bool]:
    """({user, item, rating, timestamp} -> column or None, whether `first_row` is a header): a header naming
    the columns (aliases accepted), or no header and the columns in the order user,item,rating[,timestamp].
    Shared by the in-memory reader and the streamed one (rating_store.py)."""
    header = [cell.strip().lower() for cell in first_row]
    wanted = {"user": USER_ALIASES, "item": ITEM_ALIASES, "rating": RATING_ALIASES, "timestamp": TIME_ALIASES}
    columns = {key: _find(header, aliases) for key, aliases in wanted.items()}
    if any(columns[key] is not None for key in ("user", "item", "rating")):  # a header row
        missing = [key for key in ("user", "item", "rating") if columns[key] is None]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)} (header: {', '.join(first_row)}); "
                            "expected user,item,rating[,timestamp]")
        return columns, True
    if len(first_row) >= 3 and _is_number(first_row[2]):  # no header: positional user,item,rating[,timestamp]
        return {"user": 0, "item": 1, "rating": 2, "timestamp": 3}, False
    raise DataError(f"{path}: missing columns: the first row ({', '.join(first_row)}) names no user, item and "
                    "rating columns and is not a user,item,rating[,timestamp] row")


def sniff_dialect(head: str):
    """The CSV dialect of a file from its first 4096 characters (comma, semicolon, tab or |)."""
    try:
        return csv.Sniffer().sniff(head[:4096], delimiters=",;\t|")
    except csv.Error:
        return csv.excel


def read_items_csv(path: Path, encoding: str = "utf-8") -> tuple[dict, dict]:
    """item,title[,genres] (genres separated by | or spaces), e.g. MovieLens movies.csv."""
    rows = _csv_rows(path, encoding)
    header = [cell.strip().lower() for cell in rows[0]]
    item_col = _find(header, ITEM_ALIASES)
    title_col = _find(header, ("title", "name", "movie_title"))
    if item_col is None or title_col is None:
        raise DataError(f"{path}: an items file needs item and title columns (header: {', '.join(rows[0])})")
    genre_col = _find(header, ("genres", "genre", "class", "category", "categories"))
    body = [row for row in rows[1:] if len(row) > max(item_col, title_col)]
    ids = _ids([row[item_col].strip() for row in body])
    titles = {raw: row[title_col].strip() for raw, row in zip(ids, body)}
    genres = {}
    if genre_col is not None:
        for raw, row in zip(ids, body):
            text = row[genre_col] if len(row) > genre_col else ""
            genres[raw] = [g for g in text.replace("|", " ").split() if g and g != "(no"]
    return titles, genres


def _csv_rows(path: Path, encoding: str = "utf-8") -> list[list[str]]:
    """The file's non-blank rows; decoded strictly (a non-UTF-8 file names its first bad byte and the
    data.encoding to set, instead of being read as Latin-1 behind the user's back)."""
    if not path.is_file():
        raise DataError(f"ratings file not found: {path}")
    text = decode_text(path.read_bytes(), str(path), encoding)
    rows = [row for row in csv.reader(io.StringIO(text), sniff_dialect(text)) if any(cell.strip() for cell in row)]
    if not rows:
        raise DataError(f"{path}: empty file; expected user,item,rating[,timestamp] rows")
    return rows


def _find(header: list[str], aliases: tuple[str, ...]) -> int | None:
    for alias in aliases:
        if alias in header:
            return header.index(alias)
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _numbers(values, path, what: str, first_line: int = 2) -> np.ndarray:
    try:
        array = np.asarray(values, dtype="float64")
    except ValueError:
        array = None
    if array is None or not np.isfinite(array).all():
        for number, value in enumerate(values, start=first_line):
            if not _is_number(value) or not np.isfinite(float(value)):
                raise DataError(f"{path} line {number}: {what} {value!r} is not a number")
    return array


def _times(values, path, first_line: int) -> np.ndarray:
    if all(_is_number(v) for v in values):
        return _numbers(values, path, "timestamp", first_line).astype("int64")
    try:  # ISO dates
        return np.array([np.datetime64(v.replace(" ", "T"), "s").astype("int64") for v in values])
    except ValueError:
        bad = next(v for v in values if not _is_number(v))
        raise DataError(f"{path}: timestamp {bad!r} is neither seconds nor an ISO date") from None


def _ids(values) -> np.ndarray:
    """Raw ids as int64 when every id is a plain integer (MovieLens), else as strings: "007" and "7" are two
    users, so ids with leading zeros stay strings."""
    text = np.asarray(values, dtype=str)
    unique = np.unique(text)
    if text.size and all(map(plain_integer, unique)):
        as_int = text.astype("int64")
        if np.abs(as_int).max() < 2**31:
            return as_int
    return text.astype(object)


def plain_integer(text: str) -> bool:
    """An id written as a plain integer: digits with an optional minus and no leading zero ("007" is a string)."""
    digits = text.lstrip("-")
    return digits.isdigit() and (digits == "0" or not digits.startswith("0"))
