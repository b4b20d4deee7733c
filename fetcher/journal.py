"""The journal that makes in-place tag writes on archived files crash-safe.

Before a tag is written over an archived file's old one, the bytes it overwrites are
saved in ``.fetcher/journal/`` (:func:`write_journal`), with the guid of the episode and
the SHA-256 of the new tag. The journal is finished only once the manifest row that
names the new tag is committed, so the tag and the row change together: a run that
starts, or a verify, rolls back a tag whose row was not committed
(:func:`recover_journals`) and only removes the journal of one whose row was. A tag
rewrite's temporary file also lives there and is removed at the next start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fetcher.audio import ID3V1_SIZE
from fetcher.errors import ArchiveError
from fetcher.safeio import open_nofollow, read_state, write_atomic

log = logging.getLogger(__name__)



#: The ending of a tag rewrite's temporary file.
TEMP_SUFFIX = ".tagging"


def journal_name(path: Path) -> str:
    """The stem of the journal files that belong to *path*."""
    return hashlib.sha1(str(path.resolve()).encode()).hexdigest()


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
    info = {"path": str(path.resolve()), "head": len(old), "size": size, "guid": guid,
            "tag_sha256": tag_sha256}
    write_atomic(record, json.dumps(info).encode(), sync_directory=True)
    return record


def finish_journal(record: Path) -> None:
    record.unlink()
    record.with_suffix(".bytes").unlink(missing_ok=True)


#: Whether the manifest holds the tag a journal was written for: (guid, tag SHA-256).
Committed = Callable[[str, str], bool]


def recover_journals(journal_dir: Path, *, check: Callable[[Path], Path],
                     committed: Committed | None = None) -> list[Path]:
    """Undo in-place tag writes that a crash interrupted; returns the files restored.

    A journal whose new tag *committed* finds in the manifest (the run stopped after
    the row, before the journal was finished) is removed without a roll-back: the file
    and its row agree already. Without *committed* every journal is rolled back.

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
        saved = record.with_suffix(".bytes")
        try:
            info: dict[str, Any] = json.loads(read_state(record))
            data = read_state(saved, limit=1 << 30)
            target = check(Path(info["path"]))
            head, size = int(info["head"]), int(info["size"])
            new_tag = str(info.get("tag_sha256") or "")
            if committed is not None and new_tag and committed(str(info.get("guid") or ""),
                                                               new_tag):
                log.debug("%s: its re-tag was recorded; journal finished", target)
            elif target.exists():
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
                restored.append(target)
                log.warning("%s: an interrupted re-tag was rolled back", target)
        except ArchiveError as exc:
            log.error("%s: %s; journal refused", record.name, exc)  # never applied
        except (OSError, ValueError, KeyError) as exc:
            log.error("%s: cannot roll back an interrupted re-tag: %s", record, exc)
            continue
        record.unlink()
        with contextlib.suppress(FileNotFoundError):
            saved.unlink()
    return restored
