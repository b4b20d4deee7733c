"""The journal that makes tag writes on archived files crash-safe.

A tag written over an archived file's old one in place first has the bytes it
overwrites saved in ``.fetcher/journal/`` (:func:`write_journal`); a file replaced by a
rewritten copy (a tag that outgrew its room, or audio that is not MP3) first has its
old self kept there under a second name (:func:`write_replacement_journal`). Either
journal names the episode's guid and the digest its manifest row will hold, and is
finished only once that row is committed, so the file and its row change together: a
run that starts, or a verify, puts back the old file whose new row was not committed
(:func:`recover_journals`) and only removes the journal of one whose row was. A tag
rewrite's temporary file also lives there and is removed at the next start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fetcher.audio import ID3V1_SIZE
from fetcher.errors import ArchiveError
from fetcher.safeio import fsync_directory, open_nofollow, read_state, write_atomic

log = logging.getLogger(__name__)



#: The ending of a tag rewrite's temporary file.
TEMP_SUFFIX = ".tagging"
#: The ending of the second name a replaced file keeps until its new row is committed.
OLD_SUFFIX = ".old"


def journal_name(path: Path) -> str:
    """The stem of the journal files that belong to *path*."""
    return hashlib.sha1(str(path.resolve()).encode()).hexdigest()


#: The manifest columns a journal may name as its episode's new digest.
RECORDED_COLUMNS = ("tag_sha256", "audio_sha256")


def write_journal(journal_dir: Path, path: Path, length: int, *, guid: str = "",
                  tag_sha256: str = "") -> Path:
    """Save the first *length* bytes of *path* (and its last 128) before they change;
    *guid* and *tag_sha256* name the episode and the tag about to be written, which
    :func:`recover_journals` looks for in the manifest."""
    journal_dir.mkdir(parents=True, exist_ok=True)
    name = journal_name(path)
    record = journal_dir / f"{name}.json"
    saved = journal_dir / f"{name}.bytes"
    size = path.stat().st_size
    with path.open("rb") as file:
        old = file.read(length)
        if size >= ID3V1_SIZE:
            file.seek(-ID3V1_SIZE, os.SEEK_END)
            old_tail = file.read()
        else:
            old_tail = b""
    write_atomic(saved, old + old_tail)
    _save_record(record, path, guid, "tag_sha256", tag_sha256, head=len(old), size=size)
    return record


def write_replacement_journal(journal_dir: Path, path: Path, *, guid: str, column: str,
                              digest: str) -> Path:
    """Before a rewritten copy is renamed over *path*: keep the old file as a second
    name in the journal directory (a hard link: nothing is copied), and record that
    *guid*'s row will hold *digest* in *column*. Where the filesystem has no hard links
    the journal only records the replacement; the old file cannot be put back then."""
    if column not in RECORDED_COLUMNS:
        raise ValueError(f"not a recorded column: {column}")
    journal_dir.mkdir(parents=True, exist_ok=True)
    name = journal_name(path)
    record = journal_dir / f"{name}.json"
    backup = journal_dir / f"{name}{OLD_SUFFIX}"
    backup.unlink(missing_ok=True)
    try:
        os.link(path, backup)
    except OSError as exc:
        log.debug("%s: no second name for the old file (%s)", path, exc)
    _save_record(record, path, guid, column, digest, replaced=True)
    return record


def _save_record(record: Path, path: Path, guid: str, column: str, digest: str,
                 **how: object) -> None:
    """The journal's record of a write on *path*: the file, the episode, the digest its
    row will hold, and *how* the old file is kept; durable before the write begins."""
    info = {"path": str(path.resolve()), "guid": guid, "column": column, "digest": digest,
            **how}
    write_atomic(record, json.dumps(info).encode(), sync_directory=True)


def finish_journal(record: Path) -> None:
    record.unlink()
    record.with_suffix(".bytes").unlink(missing_ok=True)
    record.with_suffix(OLD_SUFFIX).unlink(missing_ok=True)


#: Whether the manifest row of a guid holds a digest in a column: (guid, column, digest).
Committed = Callable[[str, str, str], bool]


def recorded_in(get: Callable[[str], object | None]) -> Committed:
    """The :data:`Committed` test of a manifest whose *get* returns a guid's row."""
    def committed(guid: str, column: str, digest: str) -> bool:
        row = get(guid)
        return row is not None and getattr(row, column, None) == digest

    return committed


def recover_journals(journal_dir: Path, *, check: Callable[[Path], Path],
                     committed: Committed | None = None) -> list[Path]:
    """Undo tag writes that a crash interrupted; returns the files restored.

    A journal whose digest *committed* finds in the manifest (the run stopped after the
    row, before the journal was finished) is removed without a roll-back: the file and
    its row agree already. Without *committed* every journal is rolled back.

    *check* admits the file a journal names (the archive's
    :meth:`~fetcher.store.local.Archive.existing_target`: inside the archive, no link on
    the way) or raises ArchiveError: a record planted to name a file elsewhere is
    refused and removed.
    """
    restored: list[Path] = []
    if not journal_dir.is_dir():
        return restored
    for leftover in sorted(journal_dir.glob(f"*{TEMP_SUFFIX}")):
        # A tag rewrite killed before its rename: the archived file is still whole.
        leftover.unlink(missing_ok=True)
        log.info("%s: removed what an interrupted tag rewrite left", leftover.name)
    for record in sorted(journal_dir.glob("*.json")):
        try:
            info: dict[str, Any] = json.loads(read_state(record))
            target = check(Path(info["path"]))
            rolled_back = False
            if _recorded(info, committed):
                log.debug("%s: its re-tag was recorded; journal finished", target)
            elif info.get("replaced"):
                rolled_back = _put_back(record.with_suffix(OLD_SUFFIX), target)
            elif target.exists():
                _write_back(record.with_suffix(".bytes"), target, int(info["head"]),
                            int(info["size"]))
                rolled_back = True
            if rolled_back:
                restored.append(target)
                log.warning("%s: an interrupted re-tag was rolled back", target)
        except ArchiveError as exc:
            log.error("%s: %s; journal refused", record.name, exc)  # never applied
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("%s: cannot roll back an interrupted re-tag: %s", record, exc)
            continue
        with contextlib.suppress(FileNotFoundError):
            finish_journal(record)
    return restored


def _recorded(info: dict[str, Any], committed: Committed | None) -> bool:
    """Whether the manifest already holds what the journaled write was for."""
    column, digest = info.get("column"), info.get("digest")
    return bool(committed is not None and column in RECORDED_COLUMNS and digest
                and committed(str(info.get("guid") or ""), str(column), str(digest)))


def _write_back(saved: Path, target: Path, head: int, size: int) -> None:
    """Put the bytes an in-place write overwrote back into *target*."""
    data = read_state(saved, limit=1 << 30)
    fd = open_nofollow(target, os.O_RDWR, one_link=False)
    with os.fdopen(fd, "r+b") as file:
        file.write(data[:head])
        tail = data[head:]
        if tail:
            file.seek(size - len(tail))
            file.write(tail)
        file.truncate(size)
        file.flush()
        os.fsync(file.fileno())


def _put_back(backup: Path, target: Path) -> bool:
    """Rename the old file kept as *backup* over *target*; False when there is nothing
    to put back (no second name was kept, or the run stopped before the rename)."""
    try:
        kept = backup.lstat()
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(kept.st_mode):
        raise ArchiveError(f"{backup}: is not a regular file")
    with contextlib.suppress(FileNotFoundError):
        if os.path.samestat(kept, target.lstat()):
            return False  # stopped before the rename: the file is the old one
    backup.replace(target)
    fsync_directory(target.parent)
    return True
