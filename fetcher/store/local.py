"""The archive as a local directory: its paths, the lock, the atomic commit.

Layout: ``ARCHIVE/<filename template>`` for the audio, ``ARCHIVE/.fetcher/`` for what
fetcher keeps (manifest, lock, partial downloads, tag journal). Partial files live
inside the archive, so committing is a rename on one filesystem. No path fetcher
derives from the manifest is used before it is resolved component by component inside
the archive without following a symbolic link.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath

from fetcher.errors import ArchiveError, ArchiveLockedError
from fetcher.safeio import fsync_directory, open_nofollow, read_state

STATE_DIR = ".fetcher"


@dataclass(frozen=True, slots=True)
class Archive:
    """An archive directory and the paths fetcher uses inside it."""

    root: Path
    #: The directories that commits have checked (real directories inside the archive),
    #: so that the next commit into one of them does not check them again.
    _checked: set[Path] = field(default_factory=set, compare=False, repr=False)

    @property
    def state(self) -> Path:
        return self.root / STATE_DIR

    @property
    def manifest_path(self) -> Path:
        return self.state / "manifest.sqlite3"

    @property
    def journal_dir(self) -> Path:
        return self.state / "journal"

    @property
    def url_key_path(self) -> Path:
        return self.state / "url-key"

    def url_hasher(self) -> Callable[[str], str] | None:
        """The keyed hash of audio URLs for this archive (None before its first sync).

        The key is a random secret kept in the state directory, so that a copied
        manifest or log cannot be searched for the tokens in private feed URLs.
        """
        try:
            key = read_state(self.url_key_path, limit=64)
        except FileNotFoundError:
            return None
        return lambda url: hmac.new(key, url.encode("utf-8"), hashlib.sha256).hexdigest()

    def _make_url_key(self) -> None:
        try:
            fd = open_nofollow(self.url_key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        try:
            os.write(fd, secrets.token_bytes(32))
            os.fsync(fd)
        finally:
            os.close(fd)

    def partial_path(self, guid: str) -> Path:
        digest = hashlib.sha1(guid.encode()).hexdigest()
        return Path(f"{self.root}/{STATE_DIR}/partial/{digest}.mp3.part")

    def absolute(self, relative: PurePosixPath | str) -> Path:
        """The absolute path of an archive-relative path, refusing anything outside."""
        return Path(self.absolute_text(relative))

    def absolute_text(self, relative: PurePosixPath | str) -> str:
        """:meth:`absolute` as text (planning stats one per archived episode)."""
        # String checks, not pathlib: the planner calls this once per archived episode.
        text = str(relative)
        parts = [p for p in text.split("/") if p not in ("", ".")]
        if text.startswith("/") or ".." in parts or not parts:
            raise ArchiveError(f"{relative}: path leaves the archive")
        if parts[0] == STATE_DIR:
            raise ArchiveError(f"{relative}: path is inside fetcher's own state directory")
        return f"{self.root}/{'/'.join(parts)}"

    def existing_file(self, relative: PurePosixPath | str) -> Path:
        """An archived file to read or change: inside the archive, with no symbolic
        link at any component (a planted link is never followed out of the archive).

        The file itself need not exist; ArchiveError when the path is refused.
        """
        path = self.absolute(relative)
        current = self.root
        for part in path.relative_to(self.root).parts:
            current = current / part
            try:
                mode = os.lstat(current).st_mode
            except FileNotFoundError:
                break
            except OSError as exc:
                raise ArchiveError(f"{current}: cannot be read ({exc.strerror})") from exc
            if stat.S_ISLNK(mode):
                raise ArchiveError(f"{current}: is a symbolic link; refusing to follow it")
        return path

    def existing_target(self, path: Path) -> Path:
        """:meth:`existing_file` for an absolute *path* (a journal names its file so)."""
        try:
            relative = path.relative_to(self.root.resolve())
        except ValueError:
            raise ArchiveError(f"{path}: outside the archive") from None
        self.existing_file(relative.as_posix())
        return path

    def check_state_dirs(self) -> None:
        """Refuse a state directory that is a symbolic link (it would put the manifest,
        lock and partial files outside the archive)."""
        for directory in (self.state, self.state / "partial", self.journal_dir,
                          self.state / "damaged"):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                mode = os.lstat(directory).st_mode
                if stat.S_ISLNK(mode):
                    raise ArchiveError(f"{directory}: is a symbolic link; fetcher keeps its "
                                       "state inside the archive only (remove the link)")
                if not stat.S_ISDIR(mode):
                    raise ArchiveError(f"{directory}: is not a directory")

    def holds_files(self) -> bool:
        """True when the archive directory has entries besides fetcher's state (hidden
        entries such as ``.DS_Store`` aside)."""
        try:
            with os.scandir(self.root) as entries:
                return any(not e.name.startswith(".") for e in entries)
        except OSError:
            return False  # missing or not a directory: prepare() says what is wrong

    @property
    def exists(self) -> bool:
        """True when *root* holds an archive (its state directory is there)."""
        return self.state.is_dir() and not self.state.is_symlink()

    def prepare(self) -> None:
        """Create the archive and state directories; fail clearly when unwritable."""
        self.check_state_dirs()
        try:
            for directory in (self.root, self.state, self.state / "partial"):
                directory.mkdir(parents=True, exist_ok=True)
            self.check_state_dirs()
            probe = self.state / ".write-test"
            probe.unlink(missing_ok=True)
            os.close(open_nofollow(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
            probe.unlink()
            self._make_url_key()
        except OSError as exc:
            raise ArchiveError(
                f"{self.root}: archive directory is not writable ({exc.strerror or exc})"
            ) from exc

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the archive's lock; ArchiveLockedError at once when another holds it."""
        self.check_state_dirs()
        if not self.state.is_dir():
            raise ArchiveError(f"{self.root}: not a fetcher archive (no {STATE_DIR}/ here)")
        path = self.state / "lock"
        fd = open_nofollow(path, os.O_RDWR | os.O_CREAT)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                    who = f" (pid {holder})" if holder else ""
                    raise ArchiveLockedError(
                        f"{self.root}: another fetcher sync is running on this archive{who}"
                    ) from None
                raise
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)

    def commit(self, partial: Path, relative: PurePosixPath) -> Path:
        """Move a verified, tagged partial file to its final name, durably.

        The file is already fsynced; the rename is atomic; the directory is fsynced
        after it. Directories on the way must be real directories inside the archive.
        """
        target = self.absolute(relative)
        self._make_parents(target)
        if stat.S_ISLNK(os.lstat(partial).st_mode):
            raise ArchiveError(f"{partial}: is a symbolic link; refusing to archive it")
        partial.replace(target)
        fsync_directory(target.parent)
        return target

    def _make_parents(self, target: Path) -> None:
        if target.parent in self._checked:
            if target.is_symlink():
                raise ArchiveError(f"{target}: is a symbolic link; refusing to replace it")
            return
        root = self.root.resolve()
        current = self.root
        for part in target.relative_to(self.root).parts[:-1]:
            current = current / part
            try:
                current.mkdir()
            except FileExistsError:
                pass  # made earlier, or a moment ago by another episode's commit
            else:
                fsync_directory(current.parent)
            if current.is_symlink():
                raise ArchiveError(f"{current}: is a symbolic link; refusing to follow it")
            if not current.is_dir():
                raise ArchiveError(f"{current}: is in the way of an archive directory")
        if not target.parent.resolve().is_relative_to(root):
            raise ArchiveError(f"{target}: path leaves the archive")
        if target.is_symlink():
            raise ArchiveError(f"{target}: is a symbolic link; refusing to replace it")
        self._checked.add(target.parent)


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")
