"""Progress for people: tqdm bars on a terminal, plain log lines for cron. CLI only.

The library reports progress as events; this turns them into bars or lines. Nothing
outside the CLI imports this module.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, TextIO

from fetcher.events import (
    Advanced,
    EpisodeDone,
    Event,
    Failed,
    Finished,
    PlanReady,
    Restarted,
    Retrying,
    Started,
    Status,
)
from fetcher.render import size

if TYPE_CHECKING:
    from tqdm import tqdm

log = logging.getLogger("fetcher")


def _bars() -> type[tqdm[Any]]:
    """tqdm, imported only when bars are drawn (a cron run does without its ~20 ms)."""
    from tqdm import tqdm

    return tqdm


class ProgressView:
    """Call with each event; ``close()`` at the end."""

    def __init__(self, stream: TextIO, *, bars: bool):
        self.stream = stream
        self.bars = bars
        self._overall: tqdm[Any] | None = None
        self._files: dict[str, tqdm[Any]] = {}
        #: The plan's byte total is known: file bars do not move the overall total.
        self._planned = False
        #: Failures that share a cause (a host unreachable): reported once, counted.
        self._causes: dict[str, int] = {}
        self._retried: set[str] = set()

    def __call__(self, event: Event) -> None:
        if isinstance(event, PlanReady):
            self._plan(event)
            return
        if isinstance(event, Retrying):
            # One line per episode that is retried, not one per attempt.
            if event.key not in self._retried:
                self._retried.add(event.key)
                self._info(f"{event.key}: {event.reason}; retrying")
            return
        if self.bars:
            self._draw(event)
        if isinstance(event, EpisodeDone):
            outcome = event.outcome
            if outcome.status is Status.FAILED and outcome.cause is not None:
                count = self._causes.get(outcome.cause, 0)
                self._causes[outcome.cause] = count + 1
                if count == 0:
                    self._write_error(outcome.error or "failed")
            elif outcome.status is Status.FAILED:
                self._write_error(outcome.error or "failed")
            elif outcome.status is Status.DOWNLOADED:
                self._info(f"downloaded {event.key} -> {outcome.path}")
            elif outcome.status is Status.RETAGGED:
                self._info(f"re-tagged {event.key}")

    def _info(self, message: str) -> None:
        if self.bars:
            _bars().write(f"fetcher: {message}", file=self.stream)
        else:
            log.info("%s", message)

    def _write_error(self, message: str) -> None:
        if self.bars:
            _bars().write(f"fetcher: ERROR: {message}", file=self.stream)
        else:
            log.error("%s", message)

    def _plan(self, event: PlanReady) -> None:
        unknown = f", {event.unknown_sizes} of unknown size" if event.unknown_sizes else ""
        if event.episodes:
            self._info(f"{event.episodes} to download, {size(event.bytes)}{unknown}")
        if self.bars and event.episodes:
            overall = self._overall_bar()
            overall.total = event.bytes or None
            overall.refresh()
            self._planned = event.unknown_sizes == 0

    def _draw(self, event: Event) -> None:
        overall = self._overall_bar()
        if isinstance(event, Started):
            if not self._planned:
                remaining = (event.total - event.offset) if event.total is not None else 0
                overall.total = (overall.total or 0) + max(remaining, 0)
                overall.refresh()
            bar = self._files.get(event.key)
            if bar is None:
                bar = _bars()(total=event.total, initial=event.offset, desc=event.key[-28:],
                           unit="B", unit_scale=True, unit_divisor=1024, leave=False,
                           file=self.stream, dynamic_ncols=True)
                self._files[event.key] = bar
            else:
                bar.reset(total=event.total)
                bar.update(event.offset)
        elif isinstance(event, Advanced):
            overall.update(event.bytes)
            if event.key in self._files:
                self._files[event.key].update(event.bytes)
        elif isinstance(event, Restarted):
            overall.total = (overall.total or 0) + event.discarded
            overall.refresh()
        elif isinstance(event, Finished | Failed):
            bar = self._files.pop(event.key, None)
            if bar is not None:
                bar.close()

    def _overall_bar(self) -> tqdm[Any]:
        if self._overall is None:
            self._overall = _bars()(total=0, desc="all", unit="B", unit_scale=True,
                                 unit_divisor=1024, file=self.stream, position=0,
                                 dynamic_ncols=True)
        return self._overall

    def close(self) -> None:
        for cause, count in self._causes.items():
            if count > 1:
                self._write_error(f"{cause}: {count} episodes not archived "
                                  f"({count - 1} not attempted after the first failed)")
        self._causes.clear()
        for bar in self._files.values():
            bar.close()
        self._files.clear()
        if self._overall is not None:
            self._overall.close()
            self._overall = None
