"""The values feeds spell in many ways: dates, durations, numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fetcher.sources.values import episode_number, parse_date, parse_duration, whole_number


@pytest.mark.parametrize(("text", "expected"), [
    ("Mon, 01 Jan 2024 10:00:00 +0000", datetime(2024, 1, 1, 10, tzinfo=UTC)),
    ("Tue, 15 Oct 2019 04:30:02 -0700",
     datetime(2019, 10, 15, 4, 30, 2, tzinfo=timezone(timedelta(hours=-7)))),
    ("15 Oct 2019 04:30:02 +05:30",
     datetime(2019, 10, 15, 4, 30, 2, tzinfo=timezone(timedelta(hours=5, minutes=30)))),
    ("Wed, 2 Mar 22 18:00 PST",
     datetime(2022, 3, 2, 18, tzinfo=timezone(timedelta(hours=-8)))),
    ("Sun, 05 Sept 2021 08:00:00 GMT", datetime(2021, 9, 5, 8, tzinfo=UTC)),
    ("Mon, 01 Jan 2024 10:00:00 GMT", datetime(2024, 1, 1, 10, tzinfo=UTC)),
    ("2024-01-31T12:00:00Z", datetime(2024, 1, 31, 12, tzinfo=UTC)),
    ("2024-01-31", datetime(2024, 1, 31, tzinfo=UTC)),
    ("Mon, 31 Feb 2024 10:00:00 +0000", None),
    ("Mon, 01 Foo 2024 10:00:00 +0000", None),
    ("yesterday", None),
    ("", None),
])
def test_dates_as_feeds_write_them(text: str, expected: datetime | None) -> None:
    assert parse_date(text) == expected


@given(moment=st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2099, 12, 30)),
       quarter_hours=st.integers(-48, 56), one_digit_day=st.booleans())
def test_any_rfc822_date_reads_back(moment: datetime, quarter_hours: int,
                                    one_digit_day: bool) -> None:
    # The common spelling takes a fast path; every spelling must mean the same instant.
    zone = timezone(timedelta(minutes=15 * quarter_hours))
    when = moment.replace(microsecond=0, tzinfo=zone)
    text = when.strftime("%a, %d %b %Y %H:%M:%S %z")
    if one_digit_day and when.day < 10:
        text = text.replace(f" 0{when.day} ", f" {when.day} ", 1)
    assert parse_date(text) == when


@pytest.mark.parametrize(("text", "seconds"), [
    ("3600", 3600.0), ("61:30", 3690.0), ("1:01:30", 3690.0), ("1:01:30.5", 3690.5),
    ("", None), ("soon", None), ("-5:00", None), ("99999999", None),
])
def test_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


def test_numbers() -> None:
    assert episode_number("12") == 12
    assert episode_number("12.0") == 12
    assert episode_number("12.5") == "12.5"
    assert episode_number("p01") == "p01"
    assert episode_number("  ") is None
    assert whole_number("0") == 0 and whole_number("12a") is None and whole_number(None) is None


# Titles come from parsed XML, so they hold only characters XML allows.
_xml_text = st.characters(blacklist_categories=("Cs", "Cc", "Cn"))


@given(title=st.text(_xml_text, max_size=40), query=st.text(_xml_text, max_size=20))
def test_exported_opml_reads_back_whatever_the_titles_and_urls_hold(title: str,
                                                                     query: str) -> None:
    from lxml import etree

    from fetcher.sources.opml import Subscription, read_opml, write_opml

    url = "https://example.com/feed?q=" + query
    text = write_opml([Subscription(url, title)])
    subscription = read_opml(etree.fromstring(text.encode()))[0]
    assert subscription.url == url.strip()  # whitespace around a URL is dropped
    assert subscription.title == (title or url).strip()
