"""Planning: each decision from documents, records and a stat, without reading files."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path, PurePosixPath

from support.docs import seed_episode

from fetcher.errors import SourceError
from fetcher.model import Episode, Skipped
from fetcher.plan import Action, build_plan
from fetcher.settings import TagSettings
from fetcher.store.layout import DEFAULT_TEMPLATE
from fetcher.store.local import Archive
from fetcher.store.manifest import Record
from fetcher.tagging.spec import tag_fingerprint

SEED = seed_episode()
ARCHIVE = Archive(Path("/archive"))
PATH = "linux-unplugged/0603 - All Your Kernels Belong to Rust.mp3"


def record(**changes: object) -> Record:
    base = Record(SEED.guid, SEED.show_slug, str(SEED.source), SEED.audio_url, path=PATH,
                  expected_bytes=SEED.expected_bytes, file_bytes=1000,
                  tag_hash=tag_fingerprint(SEED, TagSettings()))
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def fake_stat(sizes: dict[str, int]):  # type: ignore[no-untyped-def]
    def stat(path: Path) -> os.stat_result | None:
        size = sizes.get(str(path))
        return None if size is None else os.stat_result((0o644, 0, 0, 1, 0, 0, size, 0, 0, 0))
    return stat


def plan_one(rec: Record | None, sizes: dict[str, int], episode: Episode = SEED):  # type: ignore[no-untyped-def]
    records = {rec.guid: rec} if rec else {}
    plan = build_plan([episode], records, ARCHIVE, DEFAULT_TEMPLATE, TagSettings(),
                      stat=fake_stat(sizes))
    return plan.steps[0]


FILE = f"/archive/{PATH}"


def test_new_episode_is_downloaded_to_the_template_path() -> None:
    step = plan_one(None, {})
    assert step.action is Action.DOWNLOAD and step.reason == "new episode"
    assert step.path == PurePosixPath(PATH)


def test_partial_file_means_resume() -> None:
    step = plan_one(None, {str(ARCHIVE.partial_path(SEED.guid)): 5000})
    assert step.action is Action.DOWNLOAD and step.resume_from == 5000
    assert "resume from 5000 bytes" in step.reason


def test_unchanged_is_up_to_date() -> None:
    assert plan_one(record(), {FILE: 1000}).action is Action.UP_TO_DATE


def test_metadata_change_is_a_retag() -> None:
    step = plan_one(record(), {FILE: 1000}, dataclasses.replace(SEED, title="fixed"))
    assert step.action is Action.RETAG and step.reason == "metadata changed"


def test_changed_url_or_size_downloads_again() -> None:
    step = plan_one(record(url="https://old/a.mp3"), {FILE: 1000})
    assert step.action is Action.DOWNLOAD and step.reason == "audio URL changed"
    step = plan_one(record(expected_bytes=5), {FILE: 1000})
    assert step.action is Action.DOWNLOAD and step.reason.startswith("size changed")
    assert step.path == PurePosixPath(PATH)


def test_missing_or_truncated_file_downloads_again() -> None:
    assert plan_one(record(), {}).reason == "archived file is missing"
    step = plan_one(record(), {FILE: 10})
    assert step.action is Action.DOWNLOAD and "expected 1000" in step.reason


def test_skips_and_errors_pass_through() -> None:
    plan = build_plan([Skipped(Path("a.md"), "draft"), SourceError(Path("b.md"), "bad")],
                      {}, ARCHIVE, DEFAULT_TEMPLATE, TagSettings(), stat=fake_stat({}))
    assert [s.action for s in plan.steps] == [Action.SKIP, Action.INVALID]


def test_two_episodes_with_one_name_get_distinct_paths() -> None:
    other = dataclasses.replace(SEED, guid="other-guid")
    plan = build_plan([SEED, other], {}, ARCHIVE, DEFAULT_TEMPLATE, TagSettings(),
                      stat=fake_stat({}))
    first, second = (s.path for s in plan.steps)
    assert first == PurePosixPath(PATH)
    assert second is not None and second != first and second.parent == first.parent


def test_archived_episode_keeps_its_name_against_a_newcomer() -> None:
    newcomer = dataclasses.replace(SEED, guid="newcomer")
    plan = build_plan([newcomer, SEED], {SEED.guid: record()}, ARCHIVE, DEFAULT_TEMPLATE,
                      TagSettings(), stat=fake_stat({FILE: 1000}))
    assert plan.steps[0].path != PurePosixPath(PATH)
    assert plan.steps[1].action is Action.UP_TO_DATE
