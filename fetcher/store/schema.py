"""The manifest's schema (ordered migrations) and the one place sqlite3's errors are
translated into ManifestErrors."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from fetcher.errors import ManifestError

APPLICATION_ID = 0x46455443  # "FETC"
_SQLITE_FULL = 13
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)

REBUILD_ADVICE = ("'fetcher verify --rebuild' moves it aside and rebuilds it from the "
                  "archived files' tags")


def is_disk_full(exc: BaseException) -> bool:
    """True for a full disk or quota, whichever library reported it."""
    if isinstance(exc, OSError):
        return exc.errno in _DISK_FULL
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code == _SQLITE_FULL or "disk is full" in str(exc)
    return False


def _no_space_left(path: Path) -> bool:
    """True when the manifest's filesystem has no block left (SQLite then often reports
    a plain I/O error instead of SQLITE_FULL)."""
    try:
        stats = os.statvfs(path.parent)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < 64 * 1024


@contextlib.contextmanager
def translated(path: Path, doing: str) -> Iterator[None]:
    """The one place sqlite3's errors become ManifestErrors (cause kept)."""
    try:
        yield
    except sqlite3.Error as exc:
        if is_disk_full(exc) or _no_space_left(path):
            raise ManifestError(
                f"{path}: disk full while {doing}; nothing was changed: free some space "
                "and run again"
            ) from exc
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise ManifestError(f"{path}: manifest is locked by another program ({exc})") from exc
        raise ManifestError(
            f"{path}: manifest is damaged or not a database ({exc}); {REBUILD_ADVICE}"
        ) from exc

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema.
    """
    CREATE TABLE episodes (
        guid            TEXT PRIMARY KEY,
        show_slug       TEXT NOT NULL,
        source          TEXT NOT NULL,
        url             TEXT NOT NULL,
        path            TEXT UNIQUE,
        expected_bytes  INTEGER,
        received_bytes  INTEGER,
        file_bytes      INTEGER,
        file_mtime_ns   INTEGER,
        audio_sha256    TEXT,
        tag_sha256      TEXT,
        etag            TEXT,
        last_modified   TEXT,
        tag_hash        TEXT,
        duration_ms     INTEGER,
        size_discrepancy INTEGER NOT NULL DEFAULT 0,
        archived_at     TEXT,
        updated_at      TEXT,
        last_error      TEXT,
        last_error_at   TEXT
    );
    """,
    # 2: URLs are kept redacted; a keyed hash of the full URL notices a change.
    """
    ALTER TABLE episodes ADD COLUMN url_hash TEXT;
    """,
    # 3: feeds (conditional GET, moves, gone), audio formats, files beside the audio.
    """
    ALTER TABLE episodes ADD COLUMN format TEXT NOT NULL DEFAULT 'mp3';
    ALTER TABLE episodes ADD COLUMN files TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE episodes ADD COLUMN feed TEXT;
    ALTER TABLE episodes ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE episodes ADD COLUMN next_try TEXT;
    CREATE TABLE documents (
        path            TEXT PRIMARY KEY,
        size            INTEGER NOT NULL,
        mtime_ns        INTEGER NOT NULL,
        settings        TEXT NOT NULL,
        entries         TEXT NOT NULL
    );
    CREATE TABLE feeds (
        key             TEXT PRIMARY KEY,
        url             TEXT NOT NULL,
        final_url       TEXT,
        etag            TEXT,
        last_modified   TEXT,
        status          TEXT NOT NULL DEFAULT 'ok',
        gone_at         TEXT,
        incomplete      INTEGER NOT NULL DEFAULT 0,
        fingerprint     TEXT NOT NULL DEFAULT '',
        title           TEXT NOT NULL DEFAULT '',
        updated_at      TEXT
    );
    """,
    # 4: a document whose episodes were all found up to date is "settled": what the next
    # run must check (each archived file's size) is kept with it, and any change to one
    # of its episodes' rows unsettles it (the triggers: whatever code writes the row).
    """
    ALTER TABLE documents ADD COLUMN settled TEXT;
    CREATE TRIGGER unsettle_on_insert AFTER INSERT ON episodes BEGIN
        UPDATE documents SET settled = NULL WHERE path = NEW.source AND settled IS NOT NULL;
    END;
    CREATE TRIGGER unsettle_on_update AFTER UPDATE ON episodes BEGIN
        UPDATE documents SET settled = NULL
        WHERE path IN (OLD.source, NEW.source) AND settled IS NOT NULL;
    END;
    CREATE TRIGGER unsettle_on_delete AFTER DELETE ON episodes BEGIN
        UPDATE documents SET settled = NULL WHERE path = OLD.source AND settled IS NOT NULL;
    END;
    """,
    # 5: the items of a feed whose episodes were found up to date, by a hash of each
    # item's XML (see fetcher.sources.feeditems): a feed that changed is then read again
    # without its settled items. Any change to an episode's row unsettles its item.
    """
    CREATE TABLE feed_items (
        feed            TEXT NOT NULL,
        item            TEXT NOT NULL,
        context         TEXT NOT NULL,
        guid            TEXT NOT NULL,
        path            TEXT NOT NULL,
        size            INTEGER NOT NULL,
        PRIMARY KEY (feed, item)
    ) WITHOUT ROWID;
    CREATE INDEX feed_items_by_guid ON feed_items (guid);
    CREATE TRIGGER unsettle_item_on_insert AFTER INSERT ON episodes BEGIN
        DELETE FROM feed_items WHERE guid = NEW.guid;
    END;
    CREATE TRIGGER unsettle_item_on_update AFTER UPDATE ON episodes BEGIN
        DELETE FROM feed_items WHERE guid IN (OLD.guid, NEW.guid);
    END;
    CREATE TRIGGER unsettle_item_on_delete AFTER DELETE ON episodes BEGIN
        DELETE FROM feed_items WHERE guid = OLD.guid;
    END;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def rows_in(db: sqlite3.Connection, query: str, keys: Sequence[str]) -> Iterator[Any]:
    """The rows of *query*, which ends in ``IN``, for *keys*: one statement per 500
    keys (few enough for any SQLite's parameter limit)."""
    for start in range(0, len(keys), 500):
        part = keys[start:start + 500]
        yield from db.execute(f"{query} ({', '.join('?' * len(part))})", part)


def statements(script: str) -> Iterator[str]:
    """The SQL statements of *script* (a trigger's body holds semicolons of its own)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""
