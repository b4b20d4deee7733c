"""The manifest: an SQLite database inside the archive that remembers every episode.

Schema changes are ordered migrations; ``PRAGMA user_version`` holds the version and
``PRAGMA application_id`` marks the file as fetcher's, so a foreign or newer database is
refused with a clear message instead of being altered.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from fetcher.errors import ManifestError, redact_url
from fetcher.model import FeedRecord, SettledItem, shallow_dict
from fetcher.store.schema import (
    APPLICATION_ID,
    MIGRATIONS,
    REBUILD_ADVICE,
    SCHEMA_VERSION,
    is_disk_full,
    rows_in,
    statements,
    translated,
)

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "Manifest", "Record", "is_disk_full"]


@dataclass(frozen=True, slots=True)
class Record:
    """One row of the manifest; ``path`` is None until the episode is archived."""

    guid: str
    show_slug: str
    source: str
    url: str
    path: str | None = None
    expected_bytes: int | None = None
    received_bytes: int | None = None
    file_bytes: int | None = None
    file_mtime_ns: int | None = None
    audio_sha256: str | None = None
    tag_sha256: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    tag_hash: str | None = None
    duration_ms: int | None = None
    size_discrepancy: bool = False
    archived_at: str | None = None
    updated_at: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    #: A keyed hash of the full audio URL (``url`` itself has its query redacted).
    url_hash: str | None = None
    #: The audio's kind (``mp3``, ``mp4``, ``ogg``, ...): how verify reads the file.
    format: str = "mp3"
    #: Files kept beside the audio (transcripts, a chapters sidecar), as JSON:
    #: ``[{"kind", "path", "sha256", "bytes", "url_hash"}]``.
    files: str = "[]"
    #: The feed the episode came from (redacted), if any.
    feed: str | None = None
    #: Permanent failures in a row, and when the next try is due (ISO 8601).
    failures: int = 0
    next_try: str | None = None


_COLUMNS = [f.name for f in fields(Record)]
#: A document cache row: size, mtime_ns, settings key, entries JSON, settled JSON.
CachedRow = tuple[int, int, str, str, str | None]
_FEED_COLUMNS = [f.name for f in fields(FeedRecord)]


T = TypeVar("T")


def _locked(method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def wrapper(self: Manifest, *args: Any, **kwargs: Any) -> T:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


class Manifest:
    """Open with ``Manifest.open(path)``; use as a context manager to close it.

    Every method raises ManifestError (never a bare sqlite3 error).
    """

    def __init__(self, connection: sqlite3.Connection, path: Path):
        self._db = connection
        self.path = path
        # Writes may come from worker threads (a commit's fsync must not stall the event
        # loop): one at a time.
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> Manifest:
        if not path.exists() and not create:
            raise ManifestError(f"{path}: no manifest here; is this a fetcher archive?")
        with translated(path, "opening the manifest"):
            connection = sqlite3.connect(path, isolation_level=None, timeout=5,
                                         check_same_thread=False)
            manifest = cls(connection, path)
            try:
                manifest._check_version()  # before anything writes to a foreign file
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=FULL")
                # Deleted or replaced content (a token in an old row) is zeroed on disk.
                connection.execute("PRAGMA secure_delete=ON")
                manifest._migrate()
            except BaseException:
                connection.close()
                raise
        return manifest

    @classmethod
    def open_readonly(cls, path: Path) -> Manifest | None:
        """The manifest for reading only (a dry run), or None when there is none yet."""
        if not path.exists():
            return None
        with translated(path, "opening the manifest"):
            connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            manifest = cls(connection, path)
            try:
                manifest._check_version(readonly=True)
            except BaseException:
                connection.close()
                raise
        return manifest

    def _check_version(self, *, readonly: bool = False) -> int:
        db = self._db
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version: int = db.execute("PRAGMA user_version").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id not in (0, APPLICATION_ID) or (app_id == 0 and tables):
            raise ManifestError(
                f"{self.path}: not a fetcher manifest (another program's database); "
                f"{REBUILD_ADVICE}"
            )
        if version > SCHEMA_VERSION:
            raise ManifestError(
                f"{self.path}: manifest schema {version} was written by a newer fetcher "
                f"(this one knows up to {SCHEMA_VERSION}); upgrade fetcher"
            )
        if readonly and version < SCHEMA_VERSION:
            raise ManifestError(
                f"{self.path}: manifest schema {version} is older; run fetcher sync to upgrade"
            )
        return version

    def _migrate(self) -> None:
        db = self._db
        version = self._check_version()
        for number in range(version, SCHEMA_VERSION):
            with self._transaction():
                for statement in statements(MIGRATIONS[number]):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        with translated(self.path, "closing the manifest"):
            self._db.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with translated(self.path, "reading the manifest"):
            version: int = self._db.execute("PRAGMA user_version").fetchone()[0]
        return version

    @_locked
    def records(self) -> dict[str, Record]:
        """Every record, by guid."""
        with translated(self.path, "reading the manifest"):
            rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM episodes").fetchall()
        return {row[0]: _record(row) for row in rows}

    @_locked
    def records_for(self, guids: Sequence[str]) -> dict[str, Record]:
        """The records of *guids* that exist, by guid (a run plans in batches)."""
        with translated(self.path, "reading the manifest"):
            return {row[0]: _record(row) for row in rows_in(
                self._db, f"SELECT {', '.join(_COLUMNS)} FROM episodes WHERE guid IN", guids)}

    @_locked
    def owners_of(self, paths: Sequence[str]) -> dict[str, str]:
        """The guid of the episode archived at each of *paths* (archive-relative) that
        has one."""
        with translated(self.path, "reading the manifest"):
            return dict(rows_in(self._db, "SELECT path, guid FROM episodes WHERE path IN",
                                paths))

    @_locked
    def get(self, guid: str) -> Record | None:
        with translated(self.path, "reading the manifest"):
            row = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM episodes WHERE guid = ?", (guid,)
            ).fetchone()
        return _record(row) if row is not None else None

    def iter_archived(self) -> Iterator[Record]:
        with translated(self.path, "reading the manifest"):
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM episodes WHERE path IS NOT NULL "
                "ORDER BY path"
            )
            for row in rows:
                yield _record(row)

    @_locked
    def save(self, record: Record) -> None:
        """Insert or replace one record, durably."""
        values = shallow_dict(record)
        values["size_discrepancy"] = int(record.size_discrepancy)
        placeholders = ", ".join(f":{c}" for c in _COLUMNS)
        with translated(self.path, "writing the manifest"):
            self._db.execute(
                f"INSERT OR REPLACE INTO episodes ({', '.join(_COLUMNS)}) "
                f"VALUES ({placeholders})",
                values,
            )

    @_locked
    def save_many(self, records: list[Record]) -> None:
        with translated(self.path, "writing the manifest"), self._transaction():
            for record in records:
                self.save(record)

    @_locked
    def record_error(self, guid: str, message: str, when: str, *,
                     next_try: str | None = None) -> None:
        """Remember a failure; with *next_try* (a permanent one) count it too."""
        with translated(self.path, "writing the manifest"):
            if next_try is None:
                self._db.execute(
                    "UPDATE episodes SET last_error = ?, last_error_at = ? WHERE guid = ?",
                    (message, when, guid),
                )
            else:
                self._db.execute(
                    "UPDATE episodes SET last_error = ?, last_error_at = ?, "
                    "failures = failures + 1, next_try = ? WHERE guid = ?",
                    (message, when, next_try, guid),
                )

    @_locked
    def seal_urls(self, hasher: Callable[[str], str]) -> int:
        """Replace URLs stored in full (by an older fetcher) with their redacted form and
        keyed hash; returns how many rows changed."""
        with translated(self.path, "writing the manifest"):
            rows = self._db.execute(
                "SELECT guid, url FROM episodes WHERE url_hash IS NULL AND url != ''"
            ).fetchall()
            if not rows:
                return 0
            with self._transaction():
                for guid, url in rows:
                    self._db.execute(
                        "UPDATE episodes SET url = ?, url_hash = ? WHERE guid = ?",
                        (redact_url(url), hasher(url), guid),
                    )
            # The old rows' pages also live in the write-ahead log until it is emptied.
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return len(rows)

    # --- the document cache ------------------------------------------------------

    @_locked
    def cached_documents_for(self, paths: Sequence[str]) -> dict[str, CachedRow]:
        """(size, mtime_ns, settings key, entries JSON, settled JSON) by document path,
        for the *paths* that have a row."""
        with translated(self.path, "reading the manifest"):
            return {row[0]: row[1:] for row in rows_in(
                self._db, "SELECT path, size, mtime_ns, settings, entries, settled FROM documents "
                "WHERE path IN", paths)}

    @_locked
    def settle_documents(self, rows: list[tuple[str, str]]) -> None:
        """Mark documents settled: (settled JSON, path) pairs (see schema 4)."""
        with translated(self.path, "writing the manifest"), self._transaction():
            self._db.executemany("UPDATE documents SET settled = ? WHERE path = ?", rows)

    @_locked
    def save_documents(self, rows: list[tuple[str, int, int, str, str]]) -> None:
        if not rows:
            return
        with translated(self.path, "writing the manifest"), self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO documents (path, size, mtime_ns, settings, "
                "entries) VALUES (?, ?, ?, ?, ?)", rows)

    # --- feeds -------------------------------------------------------------------

    @_locked
    def get_feed(self, key: str) -> FeedRecord | None:
        """The feed stored under *key* (a keyed hash of its URL; ``url`` is redacted)."""
        with translated(self.path, "reading the manifest"):
            row = self._db.execute(
                f"SELECT {', '.join(_FEED_COLUMNS)} FROM feeds WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        values = dict(zip(_FEED_COLUMNS, row, strict=True))
        values["incomplete"] = bool(values["incomplete"])
        return FeedRecord(**values)

    @_locked
    def save_feed(self, key: str, record: FeedRecord) -> None:
        values = asdict(record)
        values["url"] = redact_url(record.url)
        values["key"] = key
        values["incomplete"] = int(record.incomplete)
        values["updated_at"] = datetime.now().astimezone().isoformat(timespec="seconds")
        columns = ["key", *_FEED_COLUMNS, "updated_at"]
        with translated(self.path, "writing the manifest"):
            self._db.execute(
                f"INSERT OR REPLACE INTO feeds ({', '.join(columns)}) "
                f"VALUES ({', '.join(':' + c for c in columns)})", values,
            )

    @_locked
    def mark_feeds_incomplete(self, keys: Iterable[str]) -> None:
        """Feeds with an episode not archived this run: read in full next time."""
        with translated(self.path, "writing the manifest"):
            self._db.executemany("UPDATE feeds SET incomplete = 1 WHERE key = ?",
                                 [(k,) for k in keys])

    @_locked
    def feed_items(self, feed: str) -> dict[str, SettledItem]:
        """The settled items of a feed (schema 5): (context, guid, path, size) by hash."""
        with translated(self.path, "reading the manifest"):
            return {row[0]: row[1:] for row in self._db.execute(
                "SELECT item, context, guid, path, size FROM feed_items WHERE feed = ?",
                (feed,))}

    @_locked
    def settle_feed_items(self, rows: Sequence[tuple[str, str, str, str, str, int]]) -> None:
        """Remember items as settled: (feed, item, context, guid, path, size) rows."""
        with translated(self.path, "writing the manifest"), self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO feed_items (feed, item, context, guid, path, size) "
                "VALUES (?, ?, ?, ?, ?, ?)", rows)

    @_locked
    def forget_feed_items(self, feed: str, items: Iterable[str]) -> None:
        """Drop settled items that a feed no longer holds as they were."""
        with translated(self.path, "writing the manifest"), self._transaction():
            self._db.executemany("DELETE FROM feed_items WHERE feed = ? AND item = ?",
                                 [(feed, item) for item in items])

    @_locked
    def feeds(self) -> list[FeedRecord]:
        with translated(self.path, "reading the manifest"):
            rows = self._db.execute(
                f"SELECT {', '.join(_FEED_COLUMNS)} FROM feeds ORDER BY url").fetchall()
        return [FeedRecord(**dict(zip(_FEED_COLUMNS, row, strict=True))) for row in rows]

    @_locked
    def delete(self, guid: str) -> None:
        with translated(self.path, "writing the manifest"):
            self._db.execute("DELETE FROM episodes WHERE guid = ?", (guid,))


_DISCREPANCY = _COLUMNS.index("size_discrepancy")


def _record(row: tuple[object, ...]) -> Record:
    # Positional: the columns are selected in the fields' order (a no-op run over a big
    # archive builds one Record per episode; keywords cost twice as much).
    record = Record(*row)  # type: ignore[arg-type]
    if not isinstance(row[_DISCREPANCY], bool):
        object.__setattr__(record, "size_discrepancy", bool(row[_DISCREPANCY]))
    return record
