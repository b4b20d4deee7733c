"""Episode documents: Hugo JSON front matter followed by markdown, or plain JSON.

A document's text starts with one JSON object (the front matter); the rest is the
markdown show notes. A ``.json`` file holds one episode object or a list of them.
Pages that are not episodes (TOML or YAML front matter, another ``type``, drafts,
documents without audio) become :class:`Skipped`; malformed ones raise
:class:`SourceError` naming the file.
"""

from __future__ import annotations

import json
import logging
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fetcher.errors import SourceError
from fetcher.model import Episode, Skipped, Transcript, clean_text, parse_chapters

log = logging.getLogger(__name__)

#: Documents larger than this are refused rather than read into memory.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024

Entry = Episode | Skipped


def read_document(path: Path) -> list[Entry]:
    """Read one file into its episodes and skips; raises SourceError when malformed."""
    try:
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > MAX_DOCUMENT_BYTES:
                raise SourceError(path, f"document is {size} bytes, larger than the limit")
            raw = file.read()
    except OSError as exc:
        raise SourceError(path, f"cannot read: {exc.strerror or exc}") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raise SourceError(path, "starts with a UTF-8 byte-order mark; save it without one")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SourceError(
            path, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            line=line,
        ) from None

    stripped = text.lstrip()
    if not stripped:
        return [Skipped(str(path), "empty document")]
    if stripped.startswith("+++"):
        return [Skipped(str(path), "TOML front matter: not an episode page")]
    if stripped.startswith("---"):
        return [Skipped(str(path), "YAML front matter: not an episode page")]
    if not stripped.startswith(("{", "[")):
        return [Skipped(str(path), "no JSON front matter")]

    value, body = _decode_json(path, text)
    if isinstance(value, list):
        if path.suffix.lower() != ".json":
            raise SourceError(path, "front matter is a JSON array, expected an object")
        entries: list[Entry] = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise SourceError(path, f"item {index + 1} is not a JSON object")
            entries.append(episode_from_object(item, path, ""))
        return entries
    if not isinstance(value, dict):
        raise SourceError(path, "front matter is not a JSON object")
    return [episode_from_object(value, path, body)]


def _decode_json(path: Path, text: str) -> tuple[Any, str]:
    offset = len(text) - len(text.lstrip())
    try:
        value, end = json.JSONDecoder(parse_constant=_reject_constant).raw_decode(
            text, offset
        )
    except json.JSONDecodeError as exc:
        raise SourceError(
            path, f"invalid JSON: {exc.msg}", line=exc.lineno, column=exc.colno
        ) from None
    except ValueError as exc:
        raise SourceError(path, f"invalid JSON: {exc}") from None
    except RecursionError:
        raise SourceError(path, "invalid JSON: nested too deeply") from None
    return value, text[end:]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def episode_from_object(obj: dict[str, Any], path: Path, body: str) -> Entry:
    """Map one front-matter object to an Episode, a Skipped, or raise SourceError."""
    kind = obj.get("type")
    if kind is not None and kind != "episode":
        return Skipped(str(path), f"type is {_show(kind)}, not an episode")
    if obj.get("draft") is True:
        return Skipped(str(path), "draft")
    audio = obj.get("podcast_file")
    if audio is None or (isinstance(audio, str) and not audio.strip()):
        return Skipped(str(path), "no audio (podcast_file is missing)")
    if not isinstance(audio, str):
        raise SourceError(path, f"podcast_file is a {type(audio).__name__}, not a URL")
    audio = audio.strip()
    scheme = urlsplit(audio).scheme.lower() if _parses(audio) else ""
    if scheme not in ("http", "https"):
        raise SourceError(path, "podcast_file must be an http or https URL")

    guid = _required_text(obj, "episode_guid", path)
    title = _required_text(obj, "title", path)
    show_slug = _required_text(obj, "show_slug", path)
    date = _parse_date(obj.get("date"), path)

    number = _episode_number(obj.get("episode"), path)
    padded = _optional_text(obj, "episode_padded", path)
    if padded is None:
        padded = f"{number:04d}" if isinstance(number, int) else number or ""

    chapters, warnings = parse_chapters(obj.get("podcast_chapters"))
    for warning in warnings:
        log.warning("%s: %s", path, warning)

    return Episode(
        guid=guid,
        show_slug=show_slug,
        show_name=_optional_text(obj, "show_name", path) or show_slug,
        title=title,
        date=date,
        audio_url=audio,
        source=str(path),
        episode=number,
        episode_padded=padded,
        description=_optional_text(obj, "description", path) or "",
        show_notes=body.strip(),
        hosts=_string_list(obj, "hosts", path),
        guests=_string_list(obj, "guests", path),
        tags=_string_list(obj, "tags", path),
        page_url=_optional_text(obj, "jb_url", path),
        header_image=_optional_text(obj, "header_image", path),
        expected_bytes=_expected_bytes(obj.get("podcast_bytes"), path),
        declared_duration_s=_duration(obj.get("podcast_duration"), path),
        transcripts=_transcripts(obj.get("transcripts"), path),
        chapters=tuple(chapters),
    )


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 40 else text[:37] + "..."


def _parses(url: str) -> bool:
    try:
        urlsplit(url)
    except ValueError:
        return False
    return True


def _required_text(obj: dict[str, Any], key: str, path: Path) -> str:
    value = obj.get(key)
    if value is None:
        raise SourceError(path, f"required field {key} is missing")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise SourceError(path, f"{key} is a {type(value).__name__}, expected text")
    text = str(value).strip()
    if not text:
        raise SourceError(path, f"required field {key} is empty")
    return text


def _optional_text(obj: dict[str, Any], key: str, path: Path) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SourceError(path, f"{key} is a {type(value).__name__}, expected text")
    return value.strip() or None


def _string_list(obj: dict[str, Any], key: str, path: Path) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise SourceError(path, f"{key} is a {type(value).__name__}, expected a list")
    items: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise SourceError(path, f"{key} holds a {type(item).__name__}, expected text")
        if item.strip():
            items.append(item.strip())
    return tuple(items)


def _parse_date(value: Any, path: Path) -> datetime:
    if value is None:
        raise SourceError(path, "required field date is missing")
    if not isinstance(value, str):
        raise SourceError(path, f"date is a {type(value).__name__}, expected ISO 8601 text")
    try:
        date = datetime.fromisoformat(value.strip())
    except ValueError:
        raise SourceError(path, f"date {_show(value)} is not ISO 8601") from None
    if date.tzinfo is None:
        log.warning("%s: date has no time zone; taken as UTC", path)
        date = date.replace(tzinfo=UTC)
    return date


def _episode_number(value: Any, path: Path) -> int | str | None:
    """A number, or the publisher's own text (``p01``, ``T-0``, ``hurricanehelene``):
    such episodes are published ones and are archived with their text."""
    if value is None:
        return None
    if isinstance(value, str):
        text = clean_text(value).strip()
        if text.isdigit() and len(text) < 10:
            return int(text)
        if text:
            return text[:60]
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**9:
        raise SourceError(path, f"episode {_show(value)} is not an episode number")
    return value


def _expected_bytes(value: Any, path: Path) -> int | None:
    if value is None:
        return None
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value.strip())
    if number is None:
        raise SourceError(path, f"podcast_bytes {_show(value)} is not a whole number")
    if number <= 0:
        raise SourceError(path, f"podcast_bytes {number} must be positive")
    if number >= 2**63:
        raise SourceError(path, f"podcast_bytes {_show(value)} is too large")
    return number


def _duration(value: Any, path: Path) -> float | None:
    """``HH:MM:SS``, ``MM:SS`` or a number of seconds; unusable values are warned about."""
    if value is None or value == "":
        return None
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        parts = value.strip().split(":")
        if 1 <= len(parts) <= 3:
            try:
                numbers = [float(p) for p in parts]
            except ValueError:
                numbers = []
            if numbers:
                seconds = 0.0
                for number in numbers:
                    seconds = seconds * 60 + number
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        log.warning("%s: podcast_duration %s is not a duration; ignored", path, _show(value))
        return None
    return seconds


def _transcripts(value: Any, path: Path) -> tuple[Transcript, ...]:
    if not isinstance(value, list):
        if value is not None:
            log.warning("%s: transcripts is not a list; ignored", path)
        return ()
    result: list[Transcript] = []
    for item in value:
        if isinstance(item, dict) and isinstance(item.get("url"), str):
            result.append(
                Transcript(
                    url=item["url"],
                    type=item.get("type") if isinstance(item.get("type"), str) else None,
                    language=(
                        item.get("language") if isinstance(item.get("language"), str) else None
                    ),
                    rel=item.get("rel") if isinstance(item.get("rel"), str) else None,
                )
            )
        else:
            log.warning("%s: a transcript entry has no url; ignored", path)
    return tuple(result)
