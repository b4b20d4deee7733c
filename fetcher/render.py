"""Wording: how results look to a person and as JSON. Only the CLI calls this."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fetcher.errors import SourceError, redact_url, shown_source
from fetcher.events import Outcome, Status
from fetcher.model import Chapter, Episode, Skipped, clock
from fetcher.plan import Action, Plan
from fetcher.sync import SyncReport, plan_ready


def size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def chapter_json(chapter: Chapter) -> dict[str, Any]:
    return {
        "start_ms": chapter.start_ms,
        "end_ms": chapter.end_ms,
        "title": chapter.title,
        "url": chapter.url,
        "toc": chapter.toc,
    }


def entry_json(entry: Episode | Skipped | SourceError) -> dict[str, Any]:
    """One object of ``fetcher show --json``."""
    base: dict[str, Any] = {
        "source": None,
        "status": None,
        "reason": None,
        "guid": None,
        "show_slug": None,
        "episode": None,
        "title": None,
        "url": None,
        "expected_bytes": None,
        "chapters": [],
        "chapters_source": None,
        "transcripts": [],
    }
    if isinstance(entry, Episode):
        base.update(
            source=_source(entry.source),
            status="episode",
            guid=entry.guid,
            show_slug=entry.show_slug,
            episode=entry.episode,
            title=entry.title,
            url=redact_url(entry.audio_url),
            expected_bytes=entry.expected_bytes,
            chapters=[chapter_json(c) for c in entry.chapters],
            chapters_source=entry.chapters_source,
            transcripts=[{"url": redact_url(t.url), "type": t.type, "language": t.language,
                          "rel": t.rel} for t in entry.transcripts],
        )
    elif isinstance(entry, Skipped):
        base.update(source=_source(entry.source), status="skipped", reason=entry.reason)
    else:
        base.update(source=entry.source, status="error", reason=str(entry))
    return base


def _source(source: str | None) -> str | None:
    return shown_source(source) if source else source


def entry_text(entry: Episode | Skipped | SourceError) -> list[str]:
    """The lines ``fetcher show`` prints for one entry."""
    if isinstance(entry, Skipped):
        return [f"skipped  {entry.source}: {entry.reason}"]
    if isinstance(entry, SourceError):
        return [f"error    {entry}"]
    number = f"#{entry.episode}" if entry.episode is not None else entry.guid
    lines = [
        f"{entry.show_slug} {number}  {entry.title}  "
        f"({size(entry.expected_bytes)}, {entry.date:%Y-%m-%d}, "
        f"{len(entry.chapters)} chapters)"
    ]
    for chapter in entry.chapters:
        hidden = "  [hidden]" if not chapter.toc else ""
        lines.append(f"    {clock(chapter.start_ms):>8}  {chapter.title}{hidden}")
    return lines


def show_summary(episodes: int, skipped: int, errors: int) -> str:
    return f"{episodes} episodes, {skipped} skipped, {errors} errors"


# --- sync and verify ----------------------------------------------------------------

STATUS_WORDS = {
    Status.DOWNLOADED: "downloaded",
    Status.RETAGGED: "re-tagged",
    Status.UP_TO_DATE: "up to date",
    Status.SKIPPED: "skipped",
    Status.DEFERRED: "deferred",
    Status.FAILED: "failed",
    Status.INTERRUPTED: "interrupted",
}
ACTION_WORDS = {
    Action.DOWNLOAD: "download",
    Action.RETAG: "re-tag",
    Action.UP_TO_DATE: "up to date",
    Action.SKIP: "skip",
    Action.DEFER: "deferred",
    Action.REREAD: "re-read",
    Action.INVALID: "error",
}


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    episode = outcome.episode
    return {
        "source": _source(outcome.source),
        "guid": episode.guid if episode else None,
        "show_slug": episode.show_slug if episode else None,
        "episode": episode.episode if episode else None,
        "title": episode.title if episode else None,
        "status": outcome.status.value,
        "path": str(outcome.path) if outcome.path else None,
        "bytes": outcome.bytes,
        "error": outcome.error,
        "reason": outcome.reason,
        "next_try": outcome.next_try,
        "transcripts": list(outcome.transcripts),
    }


def report_json(report: SyncReport, *, episodes: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "ok": report.ok,
        "interrupted": report.interrupted,
        "counts": {status.value: report.count(status) for status in Status},
    }
    if episodes:
        data["episodes"] = [outcome_json(o) for o in report.outcomes]
    data["sources"] = [s.as_json() for s in report.sources]
    return data


def compact_json(data: Any) -> str:
    """JSON on one line, without spaces (cheap for thousands of episodes; pipe to jq)."""
    # dumps, not dump: dumps uses the C encoder, dump the pure-Python one.
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


class StreamedReport:
    """``sync --json`` written as the run goes, so that listing a big archive holds no
    outcome per up-to-date episode: ``episodes`` first, each as it is known, then the
    report's other keys. One JSON document on one line, as :func:`report_json`'s."""

    def __init__(self, write: Callable[[str], object]):
        self._write = write
        self._opened = False

    def episode(self, outcome: Outcome) -> None:
        head = "," if self._opened else '{"episodes":['
        self._write(head + compact_json(outcome_json(outcome)))
        self._opened = True

    def finish(self, report: SyncReport) -> None:
        for outcome in report.outcomes:
            self.episode(outcome)
        head = "]," if self._opened else '{"episodes":[],'
        self._write(head + compact_json(report_json(report, episodes=False))[1:] + "\n")

    def fail(self, code: int, message: str) -> bool:
        """End the document with the error, when episodes were written (True then)."""
        if not self._opened:
            return False
        error = {"code": code, "message": message}
        self._write('],"ok":false,"error":' + compact_json(error) + "}\n")
        self._opened = False
        return True


def plan_json(plan: Plan) -> dict[str, Any]:
    ready = plan_ready(plan)
    return {
        "dry_run": True,
        "counts": {action.value: plan.count(action) for action in Action
                   if action is not Action.REREAD},
        "download": {"episodes": ready.episodes, "bytes": ready.bytes,
                     "unknown_sizes": ready.unknown_sizes},
        "episodes": [
            {
                "source": _source(step.source),
                "guid": step.episode.guid if step.episode else None,
                "episode": step.episode.episode if step.episode else None,
                "title": step.episode.title if step.episode else None,
                "action": step.action.value,
                "reason": step.reason,
                "path": str(step.path) if step.path else None,
            }
            for step in plan.steps
        ],
    }


def plan_text(plan: Plan) -> list[str]:
    lines = []
    for step in plan.steps:
        if step.action is Action.UP_TO_DATE:
            continue
        name = step.episode.label if step.episode else str(step.source)
        target = f" -> {step.path}" if step.path and step.action is Action.DOWNLOAD else ""
        lines.append(f"{ACTION_WORDS[step.action]:<10}  {name}{target}  ({step.reason})")
    counts = ", ".join(f"{plan.count(a)} {ACTION_WORDS[a]}" for a in Action
                       if a is not Action.REREAD)
    lines.append(f"dry run: {counts}; nothing was written")
    ready = plan_ready(plan)
    unknown = f" (and {ready.unknown_sizes} of unknown size)" if ready.unknown_sizes else ""
    lines.append(f"{ready.episodes} to download, {size(ready.bytes)}{unknown}")
    return lines


def summary_table(report: SyncReport) -> list[str]:
    lines = [f"{STATUS_WORDS[s]:<12}{report.count(s):>7}" for s in Status]
    total = sum(o.bytes or 0 for o in report.outcomes if o.status is Status.DOWNLOADED)
    lines.append(f"{'new bytes':<12}{size(total):>12}")
    if report.interrupted:
        lines.append("interrupted: partial downloads are kept; the next run resumes them")
    return lines
