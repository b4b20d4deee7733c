"""Where each episode's file goes: the filename template and safe path components.

Pure functions of an Episode; the storage backends use them, and so does planning.
"""

from __future__ import annotations

import functools
import hashlib
import re
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path, PurePosixPath
from typing import Any

from fetcher.audio import EXTENSIONS, kind_for
from fetcher.model import Episode

DEFAULT_TEMPLATE = "{show_slug}/{episode_padded} - {title}.mp3"
MAX_NAME_BYTES = 255
_RESERVED = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
_WINDOWS_NAMES = re.compile(r"^(con|prn|aux|nul|com[1-9]|lpt[1-9])(\..*)?$", re.IGNORECASE)

#: Fields a template may name besides the Episode's own.
EXTRA_FIELDS = ("year", "guid_short", "ext")
_EPISODE_FIELDS = frozenset(f.name for f in fields(Episode))


def template_fields() -> set[str]:
    return {f.name for f in fields(Episode)} | set(EXTRA_FIELDS)


def check_template(template: str) -> None:
    """Raise ValueError when *template* names an unknown field or is malformed."""
    if not template.strip():
        raise ValueError("the filename template is empty")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"malformed template: {exc}") from None
    known = template_fields()
    for _text, name, _spec, _conversion in parsed:
        if name is None:
            continue
        if name == "" or name.split(".")[0].split("[")[0] not in known:
            raise ValueError(
                f"unknown field {{{name}}} in the filename template "
                f"(known: {', '.join(sorted(known))})"
            )
    if template.endswith("/"):
        raise ValueError("the filename template must name a file, not a directory")


def sanitise_component(text: str, *, keep_suffix: str = "") -> str:
    """One safe path component: no separators or control characters, no leading dots,
    reserved characters replaced, at most 255 bytes in UTF-8 with *keep_suffix* kept."""
    text = unicodedata.normalize("NFC", text)
    text = _RESERVED.sub("_", text)
    if not text.isprintable():  # printable text holds no control or format character
        text = "".join(ch if unicodedata.category(ch)[0] != "C" else "_" for ch in text)
    text = re.sub(r"\s+", " ", text).strip()
    text = text.lstrip(".").rstrip(". ")
    stem = text[: -len(keep_suffix)] if keep_suffix and text.endswith(keep_suffix) else text
    stem = stem.rstrip(". ")
    if not stem or _WINDOWS_NAMES.match(stem):
        stem = f"_{stem}"
    budget = MAX_NAME_BYTES - len(keep_suffix.encode("utf-8"))
    encoded = stem.encode("utf-8")
    if len(encoded) > budget:
        stem = encoded[:budget].decode("utf-8", errors="ignore").rstrip(". ")
    return stem + keep_suffix


def _field_value(value: Any) -> Any:
    if isinstance(value, str):
        # Separators inside a value must not become directories.
        return value.replace("/", "_").replace("\\", "_")
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value).replace("/", "_")
    return value


def episode_fields(episode: Episode, names: Iterable[str] | None = None) -> dict[str, Any]:
    """The values a template may name (only *names*, when given)."""
    wanted = template_fields() if names is None else names
    values: dict[str, Any] = {}
    for name in wanted:
        if name == "episode":
            values[name] = "" if episode.episode is None else episode.episode
        elif name == "year":
            values[name] = f"{episode.date:%Y}"
        elif name == "guid_short":
            values[name] = hashlib.sha1(episode.guid.encode()).hexdigest()[:8]
        elif name == "ext":
            values[name] = EXTENSIONS[kind_for(episode.audio_type, episode.audio_url)]
        elif name in _EPISODE_FIELDS:
            values[name] = _field_value(getattr(episode, name))
    return values


@functools.lru_cache(maxsize=64)
def _named(template: str) -> tuple[str, ...]:
    """The fields *template* names (their first part: ``date`` of ``{date:%Y}``)."""
    return tuple({re.split(r"[.\[]", name, maxsplit=1)[0]
                  for _text, name, _spec, _conv in string.Formatter().parse(template)
                  if name})


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


def render_path(template: str, episode: Episode) -> PurePosixPath:
    """The archive-relative path *template* gives *episode*, every component sanitised."""
    values = _Blank(episode_fields(episode, _named(template)))
    raw = string.Formatter().vformat(template, (), values)
    parts = [p for p in raw.split("/") if p.strip()]
    if not parts:
        parts = [episode.guid]
    suffix = Path(parts[-1]).suffix.lower() if "." in parts[-1] else ""
    if not suffix or len(suffix) > 6:
        suffix = ".mp3"
        parts[-1] = parts[-1] + suffix
    clean = [sanitise_component(p) for p in parts[:-1]]
    clean.append(sanitise_component(parts[-1], keep_suffix=suffix))
    return PurePosixPath(*clean)


def with_suffix_for(path: PurePosixPath, guid: str) -> PurePosixPath:
    """A deterministic variant of *path* for a second episode that maps to it."""
    tag = hashlib.sha1(guid.encode()).hexdigest()[:8]
    name = sanitise_component(f"{path.stem} [{tag}]{path.suffix}", keep_suffix=path.suffix)
    return path.with_name(name)
