"""Commands the user runs after each archived episode and once after a run.

A hook is an argv list (no shell). It gets the episode (or the run's summary) as JSON
on stdin and the main fields as ``FETCHER_*`` environment variables. A hook that fails,
or runs past ``[hooks] timeout``, is reported as a warning: the episode is archived
whatever its hook does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fetcher.errors import shown_source

if TYPE_CHECKING:
    from fetcher.config import HooksConfig
    from fetcher.events import Outcome
    from fetcher.sync import SyncReport

log = logging.getLogger(__name__)


def episode_payload(outcome: Outcome) -> dict[str, Any]:
    episode = outcome.episode
    assert episode is not None
    return {
        "status": outcome.status.value, "path": str(outcome.path) if outcome.path else None,
        "bytes": outcome.bytes, "guid": episode.guid, "show_slug": episode.show_slug,
        "show_name": episode.show_name, "episode": episode.episode, "title": episode.title,
        "date": episode.date.isoformat(), "source": shown_source(episode.source),
        "transcripts": list(outcome.transcripts),
    }


async def run_hook(argv: Sequence[str], payload: Mapping[str, Any], env: Mapping[str, str],
                   limit: float, what: str) -> bool:
    """Run one hook; False (with a warning naming *what*) when it failed."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, **env})
    except OSError as exc:
        log.warning("%s: hook %s cannot start: %s", what, argv[0], exc.strerror or exc)
        return False
    try:
        _, stderr = await asyncio.wait_for(
            process.communicate(json.dumps(payload, ensure_ascii=False).encode()), limit)
    except TimeoutError:
        process.kill()
        await process.wait()
        log.warning("%s: hook %s ran past %.0f s and was stopped", what, argv[0], limit)
        return False
    if process.returncode != 0:
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        log.warning("%s: hook %s failed (exit %s) %s", what, argv[0], process.returncode,
                    tail[0][:200])
        return False
    return True


async def run_after_episode(hooks: HooksConfig, outcome: Outcome) -> bool:
    payload = episode_payload(outcome)
    env = {f"FETCHER_{key.upper()}": "" if value is None else str(value)
           for key, value in payload.items() if not isinstance(value, list)}
    assert outcome.episode is not None
    return await run_hook(hooks.after_episode, payload, env, hooks.timeout,
                          outcome.episode.label)


async def run_after_run(hooks: HooksConfig, report: SyncReport) -> bool:
    from fetcher.events import Status

    counts = {status.value: report.count(status) for status in Status}
    payload = {"ok": report.ok, "interrupted": report.interrupted, "counts": counts,
               "episodes": [episode_payload(o) for o in report.outcomes
                            if o.episode is not None and o.status in
                            (Status.DOWNLOADED, Status.RETAGGED)]}
    env = {"FETCHER_OK": "1" if report.ok else "0",
           **{f"FETCHER_{key.upper()}": str(value) for key, value in counts.items()}}
    return await run_hook(hooks.after_run, payload, env, hooks.timeout, "after the run")
