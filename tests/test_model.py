"""Chapter parsing and normalisation: examples from the spec and hypothesis properties."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fetcher.model import MAX_VISIBLE_CHAPTERS, Chapter, normalise_chapters, parse_chapters


def raw(start: Any, title: Any = "t", **more: Any) -> dict[str, Any]:
    return {"startTime": start, "title": title, **more}


def test_sorts_and_ends_each_chapter_where_the_next_begins() -> None:
    chapters, warnings = parse_chapters([raw(60, "b"), raw(0, "a"), raw(120.5, "c")])
    assert [(c.start_ms, c.end_ms, c.title) for c in chapters] == [
        (0, 60_000, "a"),
        (60_000, 120_500, "b"),
        (120_500, None, "c"),
    ]
    assert warnings == []


def test_numeric_strings_and_floats_are_accepted() -> None:
    chapters, _ = parse_chapters([raw("0"), raw(" 12.25 "), raw(30.0004)])
    assert [c.start_ms for c in chapters] == [0, 12_250, 30_000]


def test_same_start_collapses_to_the_first_in_document_order() -> None:
    chapters, warnings = parse_chapters([raw(0, "first"), raw(10, "x"), raw(0, "second")])
    assert [c.title for c in chapters] == ["first", "x"]
    assert "1 chapter(s) with a duplicate start time collapsed" in warnings


def test_invalid_start_times_are_dropped_with_a_warning() -> None:
    entries = [raw(-1), raw("abc"), raw(None), raw(float("nan")), raw(True), "x", raw(5)]
    chapters, warnings = parse_chapters(entries)
    assert [c.start_ms for c in chapters] == [5_000]
    assert len(warnings) == 6


def test_null_fields_are_absent_and_untitled_chapters_are_numbered() -> None:
    entries = [raw(0, None, url=None, img=None, toc=None), raw(10, "  ", url="https://x/")]
    chapters, _ = parse_chapters(entries)
    assert [c.title for c in chapters] == ["Chapter 1", "Chapter 2"]
    assert chapters[0].url is None and chapters[0].toc is True
    assert chapters[1].url == "https://x/"


def test_toc_false_is_kept_but_hidden() -> None:
    chapters, _ = parse_chapters([raw(0), raw(10, "ad", toc=False), raw(20)])
    assert [c.toc for c in chapters] == [True, False, True]


def test_end_time_honoured_only_inside_its_slot() -> None:
    chapters, _ = parse_chapters(
        [
            raw(0, endTime=5),  # honoured: ends before the next start
            raw(10, endTime=25),  # past the next start: ends at 20
            raw(20, endTime=20),  # not after its start: ends at 30
            raw(30, endTime=40),  # last chapter, duration unknown: honoured
        ]
    )
    assert [c.end_ms for c in chapters] == [5_000, 20_000, 30_000, 40_000]


def test_duration_drops_late_chapters_and_ends_the_last() -> None:
    chapters, _ = parse_chapters([raw(0), raw(50), raw(100), raw(150)])
    clipped, warnings = normalise_chapters(chapters, duration_ms=100_000)
    assert [(c.start_ms, c.end_ms) for c in clipped] == [(0, 50_000), (50_000, 100_000)]
    assert any("start at or after the end of the audio" in w for w in warnings)


def test_last_end_time_is_clamped_to_the_duration() -> None:
    chapters, _ = parse_chapters([raw(0, endTime=500)])
    clipped, _ = normalise_chapters(chapters, duration_ms=90_000)
    assert clipped[0].end_ms == 90_000


def test_more_than_255_visible_chapters_are_cut() -> None:
    entries = [raw(i) for i in range(300)] + [raw(1000, "hidden", toc=False)]
    chapters, warnings = parse_chapters(entries)
    visible = [c for c in chapters if c.toc]
    assert len(visible) == MAX_VISIBLE_CHAPTERS
    assert chapters[-1].title == "hidden"
    assert any("300 visible chapters" in w for w in warnings)


def test_chapters_object_or_list_or_garbage() -> None:
    assert parse_chapters({"version": "1.2.0", "chapters": [raw(0)]})[0][0].start_ms == 0
    assert parse_chapters(None) == ([], [])
    chapters, warnings = parse_chapters("nope")
    assert chapters == [] and warnings


# --- properties -------------------------------------------------------------------

json_number = st.one_of(
    st.integers(min_value=-10, max_value=10**7),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=0, max_value=10**6).map(str),
    st.none(),
)
raw_chapter = st.fixed_dictionaries(
    {"startTime": json_number},
    optional={
        "endTime": json_number,
        "title": st.one_of(st.none(), st.text(max_size=20)),
        "toc": st.one_of(st.none(), st.booleans()),
        "url": st.one_of(st.none(), st.text(max_size=10)),
    },
)


@given(st.lists(raw_chapter, max_size=25), st.one_of(st.none(), st.integers(1, 10**7)))
def test_normalised_chapters_form_a_clean_timeline(
    entries: list[dict[str, Any]], duration: int | None
) -> None:
    parsed, _ = parse_chapters(entries)
    chapters, _ = normalise_chapters(parsed, duration)
    starts = [c.start_ms for c in chapters]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    for index, chapter in enumerate(chapters):
        assert chapter.title
        if chapter.end_ms is not None:
            assert chapter.end_ms > chapter.start_ms
        if index + 1 < len(chapters):
            assert chapter.end_ms is not None
            assert chapter.end_ms <= chapters[index + 1].start_ms
        if duration is not None:
            assert chapter.start_ms < duration
            assert chapter.end_ms is not None and chapter.end_ms <= duration
    assert sum(c.toc for c in chapters) <= MAX_VISIBLE_CHAPTERS


@given(st.lists(raw_chapter, max_size=25), st.one_of(st.none(), st.integers(1, 10**7)))
def test_normalisation_is_idempotent(entries: list[dict[str, Any]], duration: int | None) -> None:
    once, _ = normalise_chapters(parse_chapters(entries)[0], duration)
    twice, warnings = normalise_chapters(once, duration)
    assert twice == once
    assert warnings == []


@given(st.lists(st.builds(Chapter, st.integers(0, 10**6), st.none(), st.text(max_size=5))))
def test_sorting_is_stable_for_equal_starts(chapters: list[Chapter]) -> None:
    result, _ = normalise_chapters(chapters)
    for chapter in result:
        first = next(c for c in chapters if c.start_ms == chapter.start_ms)
        assert chapter.title == (first.title or chapter.title)
