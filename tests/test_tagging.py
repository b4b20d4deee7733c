"""Tags read back with mutagen and with ffprobe: frames, chapter order, audio untouched."""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mutagen.id3 import CHAP, CTOC, ID3, TIT2, CTOCFlags, Encoding
from support.docs import DOCS, seed_episode
from support.mp3factory import FRAME_MS, id3v1_tag, id3v2_tag, mp3_bytes, text_frame_v23
from support.probe import ffprobe, ffprobe_chapters

from fetcher.audio import id3v2_size, payload_sha256
from fetcher.duration import measure_duration_ms
from fetcher.journal import finish_journal, recover_journals, write_journal
from fetcher.model import Chapter, Episode
from fetcher.settings import TagSettings
from fetcher.sources.documents import read_document
from fetcher.store.local import Archive
from fetcher.tagging.frames import PADDING
from fetcher.tagging.spec import tag_fingerprint
from fetcher.tagging.writer import Tagged, write_tags

SEED = seed_episode()
PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)


def episode_for(doc: Path) -> Episode:
    entry = read_document(doc)[0]
    assert isinstance(entry, Episode)
    return entry


def make_mp3(tmp_path: Path, duration_ms: int, prefix: bytes = b"", suffix: bytes = b"",
             name: str = "ep.mp3") -> tuple[Path, bytes]:
    audio = mp3_bytes(duration_ms, seed=duration_ms % 97)
    path = tmp_path / name
    path.write_bytes(prefix + audio + suffix)
    return path, audio


def tag(path: Path, episode: Episode, **kwargs: object) -> Tagged:
    return write_tags(path, episode, duration_ms=measure_duration_ms(path), **kwargs)  # type: ignore[arg-type]


def test_seed_episode_round_trip(tmp_path: Path) -> None:
    # Long enough for every chapter of 603 (the last starts at 58:30).
    path, audio = make_mp3(tmp_path, 3_630_000)
    duration = measure_duration_ms(path)
    assert duration is not None
    result = tag(path, SEED, cover=PNG)
    assert result.chapters == 7

    # ffprobe: chapters in order, exact ms, titles; the last ends at the real duration.
    starts = [0, 103_000, 563_000, 2_310_000, 2_453_000, 3_267_000, 3_510_000]
    expected = [
        (start, end, title)
        for start, end, title in zip(
            starts, [*starts[1:], duration],
            ["Intro", "Interview with Hannah Anderson", "Oxidizing the Kernel",
             "Housekeeping", "Boosts", "Pick", "Outro"], strict=True,
        )
    ]
    assert ffprobe_chapters(path) == expected
    tags = ffprobe(path)["format"]["tags"]
    assert tags["title"] == "All Your Kernels Belong to Rust"
    assert tags["album"] == "LINUX Unplugged"
    assert tags["artist"] == "brent, chris, wes"
    assert tags["track"] == "603"
    assert tags["genre"] == "Podcast"
    assert tags["date"].startswith("2025")

    # mutagen, without translating to v2.4 on load: version, frames, CTOC.
    id3 = ID3(path, translate=False)
    assert id3.version[:2] == (2, 3)
    assert str(id3["TIT2"]) == SEED.title
    assert str(id3["TYER"]) == "2025" and str(id3["TDAT"]) == "2402" and str(id3["TIME"]) == "0215"
    assert str(id3["TGID"]) == SEED.guid
    assert id3["PCST"].value == 0
    assert id3["WOAF"].url == SEED.page_url
    assert str(id3["COMM::eng"]) == SEED.description
    assert str(id3["COMM:Show Notes:eng"]) == SEED.show_notes
    assert str(id3["TDES"]) == SEED.description
    assert id3.getall("APIC")[0].data == PNG and id3.getall("APIC")[0].type == 3
    (toc,) = id3.getall("CTOC")
    assert toc.flags == CTOCFlags.TOP_LEVEL | CTOCFlags.ORDERED
    assert toc.child_element_ids == [f"chp{i}" for i in range(7)]
    for chap in id3.getall("CHAP"):
        assert chap.start_offset == chap.end_offset == 0xFFFFFFFF
        assert "TIT2" in chap.sub_frames

    # The audio is byte-for-byte what it was.
    assert payload_sha256(path) == hashlib.sha256(audio).hexdigest()
    tag_size = id3v2_size(path.read_bytes()[:10])
    assert tag_size is not None and path.read_bytes()[tag_size:] == audio


def test_frame_order_in_the_file(tmp_path: Path) -> None:
    """CTOC before the CHAP frames, CHAPs in start order, pictures last."""
    path, _ = make_mp3(tmp_path, 3_630_000)
    tag(path, SEED, cover=PNG)
    data = path.read_bytes()
    size = id3v2_size(data[:10])
    assert size is not None
    order: list[str] = []
    position = 10
    while position < size:
        frame_id = data[position : position + 4]
        if frame_id == b"\x00\x00\x00\x00":
            break
        (length,) = struct.unpack(">I", data[position + 4 : position + 8])
        body = data[position + 10 : position + 10 + length]
        order.append(frame_id.decode() + (":" + body.split(b"\x00")[0].decode()
                                          if frame_id in (b"CHAP", b"CTOC") else ""))
        position += 10 + length
    assert order[0] == "TIT2"
    chapter_part = [f for f in order if f.startswith(("CHAP", "CTOC"))]
    assert chapter_part == ["CTOC:toc", *[f"CHAP:chp{i}" for i in range(7)]]
    assert order[-1] == "APIC"
    assert order.index("CTOC:toc") > order.index("COMM")


def test_pcst_is_four_zero_bytes(tmp_path: Path) -> None:
    path, _ = make_mp3(tmp_path, 2_000)
    tag(path, SEED)
    data = path.read_bytes()
    at = data.index(b"PCST")
    assert data[at + 4 : at + 8] == struct.pack(">I", 4)
    assert data[at + 10 : at + 14] == b"\x00\x00\x00\x00"


@pytest.mark.parametrize(
    ("doc", "count"),
    [("duplicate-chapters-0474.md", 18), ("float-chapter-times-0616.md", None),
     ("no-chapters-0001.md", 0), ("string-bytes-0553.md", None)],
)
def test_real_documents_with_quirks(tmp_path: Path, doc: str, count: int | None) -> None:
    episode = episode_for(DOCS / doc)
    last = episode.chapters[-1].start_ms if episode.chapters else 0
    path, audio = make_mp3(tmp_path, last + 5_000)
    tag(path, episode)
    chapters = ffprobe_chapters(path)
    assert [c[0] for c in chapters] == [c.start_ms for c in episode.chapters]
    assert [c[2] for c in chapters] == [c.title for c in episode.chapters]
    if count is not None:
        assert len(chapters) == count
    if not episode.chapters:
        assert ID3(path).getall("CTOC") == []
    assert payload_sha256(path) == hashlib.sha256(audio).hexdigest()


def test_long_unicode_titles_survive(tmp_path: Path) -> None:
    long_title = "🐧 Ein sehr langer Kapiteltitel mit Umlauten äöü und Emoji 🎙️ " * 3
    episode = dataclasses.replace(
        SEED,
        title="Épisode " + long_title,
        chapters=(Chapter(0, 1_000, long_title), Chapter(1_000, None, "zwei ✓")),
    )
    path, _ = make_mp3(tmp_path, 3_000)
    tag(path, episode)
    assert len(long_title) > 60
    assert ffprobe_chapters(path) == [(0, 1_000, long_title), (1_000, 3_000 // FRAME_MS * FRAME_MS,
                                                                "zwei ✓")]
    assert ffprobe(path)["format"]["tags"]["title"] == "Épisode " + long_title


def test_255_visible_chapters_and_more(tmp_path: Path) -> None:
    chapters = tuple(Chapter(i * 1_000, None, f"c{i}") for i in range(300))
    episode = dataclasses.replace(SEED, chapters=chapters)
    path, _ = make_mp3(tmp_path, 301_000)
    result = tag(path, episode)
    assert result.chapters == 255
    read = ffprobe_chapters(path)
    assert len(read) == 255
    assert read[-1][0] == 254_000 and read[-1][1] == measure_duration_ms(path)
    assert len(ID3(path).getall("CTOC")[0].child_element_ids) == 255


def test_hidden_chapters_omitted_or_untoc(tmp_path: Path) -> None:
    chapters = (Chapter(0, None, "a"), Chapter(1_000, None, "ad", toc=False),
                Chapter(2_000, None, "b"))
    episode = dataclasses.replace(SEED, chapters=chapters)
    omit, _ = make_mp3(tmp_path, 3_000, name="omit.mp3")
    tag(omit, episode)
    assert [c[2] for c in ffprobe_chapters(omit)] == ["a", "b"]
    # A visible chapter runs on to the next visible start: no stretch without a chapter.
    assert ffprobe_chapters(omit)[0][1] == 2_000
    untoc, _ = make_mp3(tmp_path, 3_000, name="untoc.mp3")
    tag(untoc, episode, settings=TagSettings(hidden_chapters="untoc"))
    assert [c[2] for c in ffprobe_chapters(untoc)] == ["a", "ad", "b"]
    assert ID3(untoc).getall("CTOC")[0].child_element_ids == ["chp0", "chp2"]


def test_chapter_url_becomes_wxxx_and_images_only_when_enabled(tmp_path: Path) -> None:
    chapters = (Chapter(0, None, "a", url="https://example.org/ä", img="/img/a.png"),)
    episode = dataclasses.replace(SEED, chapters=chapters)
    path, _ = make_mp3(tmp_path, 2_000)
    images = {"https://www.jupiterbroadcasting.com/img/a.png": PNG}
    tag(path, episode, images=images)
    chap = ID3(path).getall("CHAP")[0]
    assert chap.sub_frames.getall("WXXX")[0].url == "https://example.org/%C3%A4"
    assert chap.sub_frames.getall("APIC") == []
    data = path.read_bytes()
    start = data.index(b"WXXX")
    size = int.from_bytes(data[start + 4:start + 8], "big")
    assert data[start + 10:start + 10 + size].endswith(b"%C3%A4")  # no stray NUL
    tag(path, episode, images=images, settings=TagSettings(chapter_images=True))
    assert ID3(path).getall("CHAP")[0].sub_frames.getall("APIC")[0].data == PNG


def test_host_tag_with_little_padding_keeps_foreign_frames(tmp_path: Path) -> None:
    host = id3v2_tag(text_frame_v23("TIT2", "Host title") + text_frame_v23("TENC", "HostEnc"),
                     padding=4)
    path, audio = make_mp3(tmp_path, 2_000, prefix=host, suffix=id3v1_tag())
    result = tag(path, SEED)
    assert not result.in_place  # did not fit: rewritten through a temporary file
    id3 = ID3(path)
    assert str(id3["TIT2"]) == SEED.title
    assert str(id3["TENC"]) == "HostEnc"
    assert not path.read_bytes().endswith(id3v1_tag())  # ID3v1 removed
    assert payload_sha256(path) == hashlib.sha256(audio).hexdigest()
    assert not list(tmp_path.glob("*.tagging"))


def _host_chapters(path: Path) -> None:
    id3 = ID3()
    id3.add(TIT2(encoding=Encoding.UTF16, text=["host"]))
    id3.add(CTOC(element_id="hosttoc", flags=CTOCFlags.TOP_LEVEL, child_element_ids=["h0"],
                 sub_frames=[]))
    id3.add(CHAP(element_id="h0", start_time=0, end_time=1_500, start_offset=0xFFFFFFFF,
                 end_offset=0xFFFFFFFF, sub_frames=[TIT2(encoding=3, text=["Host chapter"])]))
    id3.save(path, v2_version=3)


def test_host_chapters_replaced_when_the_episode_has_chapters(tmp_path: Path) -> None:
    path, _ = make_mp3(tmp_path, 2_000)
    _host_chapters(path)
    episode = dataclasses.replace(SEED, chapters=(Chapter(0, None, "ours"),))
    tag(path, episode)
    assert [c[2] for c in ffprobe_chapters(path)] == ["ours"]
    assert [t.element_id for t in ID3(path).getall("CTOC")] == ["toc"]


def test_host_chapters_kept_when_the_episode_has_none(tmp_path: Path) -> None:
    path, _ = make_mp3(tmp_path, 2_000)
    _host_chapters(path)
    tag(path, dataclasses.replace(SEED, chapters=()))
    assert ffprobe_chapters(path) == [(0, 1_500, "Host chapter")]


def test_retag_in_place_writes_only_the_tag(tmp_path: Path) -> None:
    path, audio = make_mp3(tmp_path, 3_630_000)
    first = tag(path, SEED)
    size_before = path.stat().st_size
    changed = dataclasses.replace(SEED, title="Corrected title")
    second = tag(path, changed, journal_dir=tmp_path / "journal")
    assert second.in_place and second.written_bytes == first.tag_bytes
    assert second.written_bytes <= 128 * 1024
    assert path.stat().st_size == size_before
    assert str(ID3(path)["TIT2"]) == "Corrected title"
    assert payload_sha256(path) == hashlib.sha256(audio).hexdigest()
    # The journal stays until the caller has recorded the new tag.
    assert second.journal is not None and second.journal.exists()
    finish_journal(second.journal)
    assert not list((tmp_path / "journal").iterdir())
    assert first.tag_bytes >= PADDING


def assert_recovered_both_ways(path: Path, retag: Callable[[], tuple[str, str, Path]],
                               journal: Path) -> None:
    """*retag* re-tags *path* under a journal in *journal* and returns the manifest
    column and digest its row would hold, and the journal. A start that finds the row
    holds them keeps the new file; one that does not puts the old one back; either way
    the journal is gone, and the manifest was asked about exactly that row."""
    old = path.read_bytes()
    checked = Archive(path.parent).existing_target
    for recorded in (False, True):
        path.write_bytes(old)
        column, digest, record = retag()
        assert record.exists()
        new = path.read_bytes()
        assert new != old
        asked: list[tuple[str, str, str]] = []

        def committed(guid: str, column: str, digest: str, recorded: bool = recorded,
                      asked: list[tuple[str, str, str]] = asked) -> bool:
            asked.append((guid, column, digest))
            return recorded

        restored = recover_journals(journal, check=checked, committed=committed)
        assert asked == [(SEED.guid, column, digest)]
        assert path.read_bytes() == (new if recorded else old)
        assert restored == ([] if recorded else [path.resolve()])
        assert list(journal.iterdir()) == []


def test_a_recorded_retag_is_kept_and_an_unrecorded_one_rolled_back(tmp_path: Path) -> None:
    # A run that stops after the in-place tag: the next start rolls the tag back unless
    # the manifest already names it (the run stopped between the row and the journal).
    path, _ = make_mp3(tmp_path, 2_000)
    tag(path, SEED)
    journal = tmp_path / "journal"

    def retag() -> tuple[str, str, Path]:
        tagged = tag(path, dataclasses.replace(SEED, title="Retitled"), journal_dir=journal)
        assert tagged.in_place and tagged.journal is not None
        head = path.read_bytes()[: tagged.tag_bytes]
        assert tagged.tag_sha256 == hashlib.sha256(head).hexdigest()
        return "tag_sha256", tagged.tag_sha256, tagged.journal

    assert_recovered_both_ways(path, retag, journal)


def test_a_rewritten_file_keeps_its_old_self_until_the_new_tag_is_recorded(
        tmp_path: Path) -> None:
    # A tag that outgrows its room rewrites the file; until the caller has recorded the
    # new tag, the old file keeps a second name in the journal, and the next start puts
    # it back unless the manifest already names the new tag.
    path, audio = make_mp3(tmp_path, 2_000)
    tag(path, SEED)
    journal = tmp_path / "journal"

    def retag() -> tuple[str, str, Path]:
        old = path.read_bytes()
        tagged = tag(path, dataclasses.replace(SEED, title="y" * 20_000), journal_dir=journal)
        assert not tagged.in_place and tagged.journal is not None
        assert path.stat().st_size > len(old)
        assert payload_sha256(path) == hashlib.sha256(audio).hexdigest()
        assert tagged.journal.with_suffix(".old").read_bytes() == old
        return "tag_sha256", tagged.tag_sha256, tagged.journal

    assert_recovered_both_ways(path, retag, journal)


def test_an_archived_file_that_is_not_mp3_is_retagged_under_a_journal(
        tmp_path: Path) -> None:
    import mutagen
    from support.feeds import encoded_audio

    from fetcher.audio import file_sha256
    from fetcher.tagging.other import retag_archived, write_other_tags

    path = tmp_path / "ep.m4a"
    path.write_bytes(encoded_audio("m4a"))
    write_other_tags(path, SEED, None)
    journal = tmp_path / "journal"

    def retag() -> tuple[str, str, Path]:
        digest, record = retag_archived(path, dataclasses.replace(SEED, title="Retitled"),
                                        None, journal_dir=journal)
        assert digest == file_sha256(path)
        assert mutagen.File(path).tags["\xa9nam"] == ["Retitled"]
        assert ffprobe(path)["format"]["tags"]["title"] == "Retitled"
        return "audio_sha256", digest, record

    assert_recovered_both_ways(path, retag, journal)


def test_a_replacement_stopped_before_its_rename_leaves_the_file_alone(
        tmp_path: Path) -> None:
    from fetcher.journal import write_replacement_journal

    path, _ = make_mp3(tmp_path, 1_000)
    old = path.read_bytes()
    journal = tmp_path / "journal"
    write_replacement_journal(journal, path, guid=SEED.guid, column="tag_sha256",
                              digest="0" * 64)
    assert recover_journals(journal, check=Archive(tmp_path).existing_target) == []
    assert path.read_bytes() == old and path.stat().st_nlink == 1
    assert list(journal.iterdir()) == []


def test_interrupted_in_place_write_is_rolled_back(tmp_path: Path) -> None:
    path, _ = make_mp3(tmp_path, 2_000)
    tag(path, SEED)
    good = path.read_bytes()
    journal = tmp_path / "journal"
    from fetcher.tagging import writer

    original = writer._overwrite_in_place

    def crash_after_journal(target: Path, file: BinaryIO, data: bytes, strip: bool,
                            jdir: Path | None, **_: str) -> None:
        write_journal(jdir, target, len(data))  # type: ignore[arg-type]
        file.seek(0)
        file.write(data[: len(data) // 2])  # torn write, then "power loss"
        file.flush()
        raise KeyboardInterrupt

    writer._overwrite_in_place = crash_after_journal  # type: ignore[assignment]
    try:
        with pytest.raises(KeyboardInterrupt):
            tag(path, dataclasses.replace(SEED, title="x" * 500), journal_dir=journal)
    finally:
        writer._overwrite_in_place = original  # type: ignore[assignment]
    assert path.read_bytes() != good
    checked = Archive(tmp_path).existing_target
    assert recover_journals(journal, check=checked) == [path.resolve()]
    assert path.read_bytes() == good
    assert list(journal.iterdir()) == []


def test_the_tag_hash_reported_is_the_hash_read_back(tmp_path: Path) -> None:
    from fetcher.audio import tag_sha256

    path, _ = make_mp3(tmp_path, 2_000)
    first = tag(path, SEED)  # a rewrite: the file had no tag
    assert not first.in_place and first.tag_sha256 == tag_sha256(path)
    second = tag(path, dataclasses.replace(SEED, title="Retitled"))
    assert second.in_place and second.tag_sha256 == tag_sha256(path)
    assert second.tag_sha256 != first.tag_sha256


def test_date_is_written_in_utc(tmp_path: Path) -> None:
    late = dataclasses.replace(SEED, date=datetime(2024, 12, 31, 23, 30, tzinfo=UTC))
    path, _ = make_mp3(tmp_path, 2_000)
    tag(path, late)
    id3 = ID3(path, translate=False)
    assert (str(id3["TYER"]), str(id3["TDAT"]), str(id3["TIME"])) == ("2024", "3112", "2330")


def test_an_id3v24_tag_carries_the_date_as_tdrc(tmp_path: Path) -> None:
    when = dataclasses.replace(SEED, date=datetime(2024, 12, 31, 23, 30, 15, tzinfo=UTC))
    path, _ = make_mp3(tmp_path, 2_000)
    tag(path, when, settings=TagSettings(id3_version=4))
    id3 = ID3(path, translate=False)
    assert id3.version[:2] == (2, 4)
    assert str(id3["TDRC"]) == "2024-12-31 23:30:15"  # mutagen shows a space ...
    assert b"2024-12-31T23:30:15" in path.read_bytes()[:4096]  # ... the file has the T
    assert not {"TYER", "TDAT", "TIME"} & set(id3.keys())
    assert ffprobe(path)["format"]["tags"]["date"].startswith("2024-12-31")


def test_an_id3v24_tag_lists_the_people_in_tipl(tmp_path: Path) -> None:
    from fetcher.model import Person

    people = dataclasses.replace(SEED, persons=(Person("Ann Host"), Person("Gus", "guest")))
    path, _ = make_mp3(tmp_path, 2_000)
    tag(path, people, settings=TagSettings(id3_version=4))
    assert ID3(path).getall("TIPL")[0].people == [["host", "Ann Host"], ["guest", "Gus"]]
    v23, _ = make_mp3(tmp_path, 2_000, name="v23.mp3")
    tag(v23, people)
    assert ID3(v23, translate=False).getall("IPLS")[0].people[1] == ["guest", "Gus"]


def test_a_host_picture_without_description_does_not_replace_the_cover(
        tmp_path: Path) -> None:
    from mutagen.id3 import APIC, PictureType

    host = ID3()
    host.add(APIC(encoding=3, mime="image/png", type=PictureType.ARTIST, desc="",
                  data=PNG + b"artist"))
    path, _ = make_mp3(tmp_path, 2_000)
    host.save(path, v2_version=3)
    tag(path, SEED, cover=PNG)
    pictures = ID3(path).getall("APIC")
    assert [(p.type, p.data) for p in pictures] == [(PictureType.COVER_FRONT, PNG)]
    untagged, _ = make_mp3(tmp_path, 2_000, name="plain.mp3")
    host.save(untagged, v2_version=3)
    tag(untagged, SEED)  # no cover of fetcher's: the host's picture stays
    assert [p.type for p in ID3(untagged).getall("APIC")] == [PictureType.ARTIST]


def test_fingerprint_changes_with_metadata_only() -> None:
    settings = TagSettings()
    same = tag_fingerprint(SEED, settings)
    assert tag_fingerprint(dataclasses.replace(SEED), settings) == same
    assert tag_fingerprint(dataclasses.replace(SEED, title="new"), settings) != same
    assert tag_fingerprint(SEED, TagSettings(cover=False)) != same
    assert tag_fingerprint(dataclasses.replace(SEED, expected_bytes=1), settings) == same


def test_tag_goes_into_the_room_reserved_ahead_of_the_host_tag(tmp_path: Path) -> None:
    from fetcher.staging import placeholder_tag
    from fetcher.tagging.frames import reserve_for

    reserve = reserve_for(SEED, TagSettings(), None, {})
    host = id3v2_tag(text_frame_v23("TENC", "HostEnc") + text_frame_v23("TIT2", "old"),
                     padding=20)
    audio = mp3_bytes(3_630_000, seed=4)
    path = tmp_path / "ep.mp3.part"
    path.write_bytes(placeholder_tag(reserve) + bytes(reserve - 10) + host + audio)
    result = tag(path, SEED)
    assert result.in_place
    assert result.written_bytes == reserve + len(host)  # the audio was not rewritten
    data = path.read_bytes()
    size = id3v2_size(data[:10])
    assert size == reserve + len(host) and data[size:] == audio  # one tag, then the audio
    assert str(ID3(path)["TENC"]) == "HostEnc" and str(ID3(path)["TIT2"]) == SEED.title
    assert len(ffprobe_chapters(path)) == 7


def test_declared_and_measured_durations_that_disagree_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, _ = make_mp3(tmp_path, 3_629_000)  # within 2 s of the declared 1:00:30
    tag(path, SEED)
    assert "document declares" not in caplog.text
    short, _ = make_mp3(tmp_path, 60_000, name="short.mp3")
    tag(short, SEED)
    assert "the audio plays 60.0 s but the document declares 3630.0 s" in caplog.text


def test_id3v24_when_asked(tmp_path: Path) -> None:
    path, audio = make_mp3(tmp_path, 3_630_000)
    tag(path, SEED, settings=TagSettings(id3_version=4))
    assert ID3(path).version[:2] == (2, 4)
    assert [c[2] for c in ffprobe_chapters(path)][:2] == ["Intro",
                                                          "Interview with Hannah Anderson"]
    assert payload_sha256(path) == hashlib.sha256(audio).hexdigest()


_texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


_people = st.lists(st.tuples(_texts, st.sampled_from(["host", "guest", "composer"])),
                   max_size=3)


@settings(max_examples=200, deadline=None)
@given(title=_texts, show=_texts, hosts=st.lists(_texts, max_size=3), guid=_texts,
       number=st.one_of(st.none(), st.integers(0, 99999), _texts),
       season=st.one_of(st.none(), st.integers(0, 99)),
       chapters=st.lists(st.tuples(st.integers(0, 10**7), _texts,
                                   st.sampled_from([None, "https://e.com/a", "/rel"]),
                                   st.sampled_from([None, "https://e.com/i.png"]),
                                   st.booleans()),
                         max_size=6),
       people=_people, notes=_texts, description=_texts,
       feed=st.sampled_from([None, "https://user:pw@e.com/feed.xml?token=1"]),
       version=st.sampled_from([3, 4]), cover=st.booleans(), untoc=st.booleans())
def test_own_frame_encoding_equals_mutagens(
        title: str, show: str, hosts: list[str], guid: str, number: int | str | None,
        season: int | None, chapters: list[tuple[int, str, str | None, str | None, bool]],
        people: list[tuple[str, str]], notes: str, description: str, feed: str | None,
        version: int, cover: bool, untoc: bool) -> None:
    # fetcher encodes its own frames without mutagen: the bytes must be those mutagen
    # writes for the same frames (tests/support/mutagen_tags.py), for any text, with or
    # without host frames (which mutagen converts) around them.
    from mutagen.id3 import APIC, TDRC, TIT3, TXXX, PictureType
    from support import mutagen_tags

    from fetcher.model import Person
    from fetcher.tagging.frames import chapter_frames, encode_frames, metadata_frames
    from fetcher.tagging.spec import final_chapters

    episode = dataclasses.replace(
        SEED, title=title, show_name=show, hosts=tuple(hosts), guid=guid or "g",
        episode=number, season=season, page_url="https://e.com/p", feed_url=feed,
        show_notes=notes, description=description,
        persons=tuple(Person(name, role) for name, role in people),
        chapters=tuple(Chapter(start_ms=s, end_ms=None, title=t, url=u, img=i, toc=toc)
                       for s, t, u, i, toc in chapters))
    settings = TagSettings(id3_version=version, chapter_images=True,
                           hidden_chapters="untoc" if untoc else "omit")
    images = {"https://e.com/i.png": PNG}
    picture = PNG if cover else None
    final = final_chapters(episode, 10**7 + 1000)
    host = [TIT3(encoding=Encoding.UTF8, text=[title or "x"]), TDRC(text=["2024-05-06"]),
            TXXX(encoding=Encoding.UTF8, desc="k", text=["v", "w"]),
            APIC(encoding=Encoding.UTF8, mime="image/png", type=PictureType.ARTIST,
                 desc="", data=PNG)]
    ours = encode_frames([*metadata_frames(episode, picture, version=version), *host,
                          *chapter_frames(final, settings, images, "https://e.com/")],
                         version=version)
    reference = mutagen_tags.encode_frames_by_mutagen(
        [*mutagen_tags.metadata_frames(episode, picture, version=version), *host,
         *mutagen_tags.chapter_frames(final, settings, images, "https://e.com/")],
        version=version)
    assert ours == reference


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from("abcXYZ09-._~:/?#[]@!$&'()*+,;=%"), max_size=60)
       | st.text(max_size=30).map(lambda t: f"https://exämple.org/{t}"))
def test_a_plain_url_is_left_as_it_is_and_others_are_encoded(url: str) -> None:
    from urllib.parse import quote, urlsplit

    from fetcher.tagging.spec import latin1_url

    encoded = latin1_url(url)
    assert encoded.isascii()
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        host = ""
    if host.isascii():  # no international name to put in IDNA: exactly quote()'s answer
        assert encoded == quote(url, safe=":/?#[]@!$&'()*+,;=%~")
