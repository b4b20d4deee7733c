"""Named crash points for the crash-safety tests.

``FETCHER_FAILPOINT=name`` (or ``name:N`` for the N-th time it is reached) makes the
process kill itself with SIGKILL at that point: no cleanup, no finally blocks, just as
a power cut or the OOM killer would. Unset, :func:`failpoint` costs one dict lookup.
"""

from __future__ import annotations

import os
import signal
import threading

_lock = threading.Lock()
_hits: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
    spec = os.environ.get("FETCHER_FAILPOINT")
    if not spec:
        return None
    name, _, count = spec.partition(":")
    return name, int(count) if count.isdigit() else 1


_TARGET = _target()

#: Every point fetcher can stop at; the tests kill at each of them.
POINTS = (
    "download-streaming",  # body bytes are arriving
    "download-verified",  # the body is complete and verified, before tagging
    "tag-journaled",  # an in-place re-tag's journal is written, the tag is not
    "tag-torn",  # half of a new tag is written
    "tag-written",  # an in-place re-tag is on disk, its manifest row is not
    "retag-rewriting",  # a tag that outgrew its room: the file is being rewritten
    "retag-rewritten",  # the rewritten file has its name, the manifest does not know
    "tagged",  # the partial file is tagged, before the rename
    "renamed",  # the file has its final name, the manifest does not know yet
    "recorded",  # the manifest row is committed
)


def failpoint(name: str) -> None:
    if _TARGET is None or _TARGET[0] != name:
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] == _TARGET[1]:
            os.kill(os.getpid(), signal.SIGKILL)
