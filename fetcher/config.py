"""The TOML configuration, read into frozen dataclasses; every error names its key.

Relative paths in the file are taken relative to the file's own directory, so a config
works from wherever cron starts fetcher.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from fetcher.errors import ConfigError, is_url, redact_url
from fetcher.filters import Filters, make_filters
from fetcher.model import Episode
from fetcher.settings import DEFAULT_USER_AGENT, DownloadSettings, FeedSettings, TagSettings
from fetcher.store.layout import DEFAULT_TEMPLATE, check_template

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ArchiveConfig:
    dir: Path = Path("archive")
    filename: str = DEFAULT_TEMPLATE


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One ``[[source]]`` table: a path or URL with settings of its own."""

    name: str
    #: The show's slug (its directory under the default templates).
    show: str | None = None
    #: The filename template for this source's episodes.
    filename: str | None = None
    filters: Filters = field(default_factory=Filters)


@dataclass(frozen=True, slots=True)
class SourcesConfig:
    #: Paths (relative ones resolved against the config file's directory) and URLs.
    paths: tuple[str, ...] = ()
    #: ``[[source]]`` tables.
    entries: tuple[SourceConfig, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Every source named in the config, each once, in order."""
        return tuple(dict.fromkeys([*self.paths, *(e.name for e in self.entries)]))

    def for_source(self, name: str) -> SourceConfig | None:
        """The ``[[source]]`` table *name* (a feed URL, or a document's path) belongs
        to: the same URL or path, or the directory that holds the document."""
        for entry in self.entries:
            if entry.name == name or name.startswith(entry.name.rstrip("/") + "/"):
                return entry
        return None


@dataclass(frozen=True, slots=True)
class HooksConfig:
    """Commands run after each archived episode and once after a run (argv lists)."""

    after_episode: tuple[str, ...] = ()
    after_run: tuple[str, ...] = ()
    #: Seconds a hook may run before it is stopped (and reported).
    timeout: float = 300.0


@dataclass(frozen=True, slots=True)
class Config:
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    download: DownloadSettings = field(default_factory=DownloadSettings)
    tags: TagSettings = field(default_factory=TagSettings)
    feeds: FeedSettings = field(default_factory=FeedSettings)
    hooks: HooksConfig = field(default_factory=HooksConfig)

    def filters_for(self, source: str) -> Filters:
        entry = self.sources.for_source(source)
        return entry.filters if entry is not None else Filters()

    def template_for_url(self, url: str) -> str:
        entry = self.sources.for_source(url)
        return entry.filename if entry is not None and entry.filename else self.feeds.filename

    def template_for(self, episode: Episode) -> str:
        """The filename template of *episode*: its source's, else the feeds' default for
        feed episodes, else ``[archive] filename``."""
        entry = self.sources.for_source(episode.source)
        if entry is not None and entry.filename:
            return entry.filename
        return self.feeds.filename if episode.feed_url else self.archive.filename


# Each key: (type check, converter, validator message or None).
Check = Callable[[Any], bool]


def _int(low: int, high: int) -> Check:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _number(low: float, high: float) -> Check:
    return lambda v: isinstance(v, int | float) and not isinstance(v, bool) and low <= v <= high


def _choice(*options: object) -> Check:
    return lambda v: v in options and type(v) in {type(o) for o in options}


def _string(v: Any) -> bool:
    return isinstance(v, str)


def _boolean(v: Any) -> bool:
    return isinstance(v, bool)


def _string_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(item, str) for item in v)


SCHEMA: dict[str, dict[str, tuple[Check, str]]] = {
    "archive": {
        "dir": (_string, "a path"),
        "filename": (_string, "a filename template"),
    },
    "sources": {
        "paths": (_string_list, "a list of paths"),
    },
    "download": {
        "jobs": (_int(1, 64), "a whole number from 1 to 64"),
        "per_host": (_int(1, 64), "a whole number from 1 to 64"),
        "retries": (_int(0, 20), "a whole number from 0 to 20"),
        "backoff": (_number(0, 600), "seconds from 0 to 600"),
        "timeout": (_number(0.1, 3600), "seconds from 0.1 to 3600"),
        "user_agent": (_string, "text"),
        "size_mismatch": (_choice("fail", "accept"), '"fail" or "accept"'),
        "max_retry_wait": (_number(0, 86400), "seconds from 0 to 86400"),
        "allow_private_addresses": (_boolean, "true or false"),
        "ca_file": (_string, "a path to a PEM file of certificate authorities, or empty"),
        "proxy": (_string, "an http:// proxy URL, or empty"),
    },
    "feeds": {
        "max_pages": (_int(1, 100_000), "a whole number from 1 to 100000"),
        "media": (_choice("audio", "any"), '"audio" or "any"'),
        "filename": (_string, "a filename template"),
    },
    "hooks": {
        "after_episode": (_string_list, "a command as a list of words"),
        "after_run": (_string_list, "a command as a list of words"),
        "timeout": (_number(1, 86400), "seconds from 1 to 86400"),
    },
    "tags": {
        "id3_version": (_choice(3, 4), "3 or 4"),
        "cover": (_boolean, "true or false"),
        "image_base_url": (_string, "a URL, or empty for the episode page's origin"),
        "chapter_images": (_boolean, "true or false"),
        "hidden_chapters": (_choice("omit", "untoc"), '"omit" or "untoc"'),
    },
}


def load_config(path: Path | None) -> Config:
    """Read *path* (None: all defaults); raises ConfigError naming the key."""
    if path is None:
        return Config()
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError("no such configuration file", path=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", path=path) from None
    return parse_config(data, base=path.parent, path=path)


SOURCE_KEYS: dict[str, Check] = {
    "path": _string, "url": _string, "show": _string, "filename": _string,
    "since": _string, "until": _string, "match": _string, "exclude": _string,
    "latest": _int(1, 1_000_000),
}


def parse_config(data: Mapping[str, Any], *, base: Path, path: Path | None = None) -> Config:
    data = dict(data)
    entries = _source_tables(data.pop("source", []), base, path)
    for section, values in data.items():
        if section not in SCHEMA:
            raise ConfigError(f"unknown section (known: {', '.join(SCHEMA)})", key=section,
                              path=path)
        if not isinstance(values, dict):
            raise ConfigError("must be a table", key=section, path=path)
        for key, value in values.items():
            name = f"{section}.{key}"
            if key not in SCHEMA[section]:
                known = ", ".join(SCHEMA[section])
                raise ConfigError(f"unknown key (known: {known})", key=name, path=path)
            check, expected = SCHEMA[section][key]
            if not check(value):
                raise ConfigError(f"must be {expected}, not {value!r}", key=name, path=path)

    archive = data.get("archive", {})
    filename = archive.get("filename", DEFAULT_TEMPLATE)
    try:
        check_template(filename)
    except ValueError as exc:
        raise ConfigError(str(exc), key="archive.filename", path=path) from None
    archive_config = ArchiveConfig(
        dir=_resolve(base, archive.get("dir", "archive")), filename=filename
    )
    if not str(archive.get("dir", "archive")).strip():
        raise ConfigError("must not be empty", key="archive.dir", path=path)
    sources = SourcesConfig(
        tuple(_source(base, p) for p in data.get("sources", {}).get("paths", [])), entries
    )
    feeds = _fill(FeedSettings(), data.get("feeds", {}))
    try:
        check_template(feeds.filename)
    except ValueError as exc:
        raise ConfigError(str(exc), key="feeds.filename", path=path) from None
    download_data = dict(data.get("download", {}))
    ca_file = download_data.pop("ca_file", "")
    proxy = download_data.pop("proxy", "").strip()
    if proxy and (not proxy.lower().startswith("http://") or not urlsplit(proxy).hostname):
        raise ConfigError("must be an http:// proxy URL (http://host:port), not "
                          f"{redact_url(proxy)!r}", key="download.proxy", path=path)
    download = _fill(DownloadSettings(), download_data)
    if proxy:
        download = replace(download, proxy=proxy)
    if ca_file.strip():
        download = replace(download, ca_file=_ca_file(_resolve(base, ca_file), path))
    if not download.user_agent.strip():
        download = replace(download, user_agent=DEFAULT_USER_AGENT)
    tags_data = dict(data.get("tags", {}))
    if tags_data.get("image_base_url") == "":
        tags_data["image_base_url"] = None
    tags = _fill(TagSettings(), tags_data)
    hooks_data = data.get("hooks", {})
    hooks = HooksConfig(tuple(hooks_data.get("after_episode", ())),
                        tuple(hooks_data.get("after_run", ())),
                        float(hooks_data.get("timeout", 300.0)))
    return Config(archive_config, sources, download, tags, feeds, hooks)


def _ca_file(file: Path, path: Path | None) -> str:
    """*file* when it holds certificates that can be trusted; ConfigError otherwise."""
    import ssl

    try:
        # A bare context: the check needs the file, not the system's store as well.
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(file))
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file", key="download.ca_file", path=path) from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{file}: not a PEM file of certificates ({exc})",
                          key="download.ca_file", path=path) from None
    return str(file)


def _source_tables(tables: Any, base: Path, path: Path | None) -> tuple[SourceConfig, ...]:
    if not isinstance(tables, list):
        raise ConfigError("must be an array of tables ([[source]])", key="source", path=path)
    entries = []
    for index, table in enumerate(tables, 1):
        where = f"source.{index}"
        if not isinstance(table, dict):
            raise ConfigError("must be a table", key=where, path=path)
        for key, value in table.items():
            check = SOURCE_KEYS.get(key)
            if check is None:
                raise ConfigError(f"unknown key (known: {', '.join(SOURCE_KEYS)})",
                                  key=f"{where}.{key}", path=path)
            if not check(value) or (isinstance(value, str) and not value.strip()):
                kind = "a whole number from 1" if key == "latest" else "text"
                raise ConfigError(f"must be {kind}, not {value!r}", key=f"{where}.{key}",
                                  path=path)
        if ("path" in table) == ("url" in table):
            raise ConfigError("needs exactly one of path or url", key=where, path=path)
        url = table.get("url")
        if url is not None and not is_url(url):
            raise ConfigError(f"must be an http(s) URL, not {url!r}", key=f"{where}.url",
                              path=path)
        if "filename" in table:
            try:
                check_template(table["filename"])
            except ValueError as exc:
                raise ConfigError(str(exc), key=f"{where}.filename", path=path) from None
        name = url if url is not None else _source(base, table["path"])
        try:
            filters = make_filters(since=table.get("since"), until=table.get("until"),
                                   latest=table.get("latest"), match=table.get("match"),
                                   exclude=table.get("exclude"), key=f"{where}.")
        except ConfigError as exc:
            raise ConfigError(str(exc), path=path) from None
        entries.append(SourceConfig(name, table.get("show"), table.get("filename"), filters))
    return tuple(entries)


def _source(base: Path, value: str) -> str:
    """A source as given: a URL unchanged, a path resolved like every other path."""
    if is_url(value):
        return value
    return str(_resolve(base, value))


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _fill(default: T, values: Mapping[str, Any]) -> T:
    known = {f.name for f in fields(default)}  # type: ignore[arg-type]
    return replace(default, **{k: v for k, v in values.items() if k in known})  # type: ignore[type-var]
