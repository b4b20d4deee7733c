"""The TOML configuration: the example documents every key; errors name the key."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from fetcher.config import SCHEMA, Config, load_config, parse_config
from fetcher.errors import ConfigError
from fetcher.settings import FeedSettings

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"


def test_example_parses_and_matches_the_defaults_except_sources() -> None:
    config = load_config(EXAMPLE)
    defaults = Config()
    assert config.download == defaults.download
    assert config.tags == replace(defaults.tags,
                                  image_base_url="https://www.jupiterbroadcasting.com/")
    assert config.archive.filename == defaults.archive.filename
    assert config.archive.dir == EXAMPLE.parent / "archive"
    assert config.sources.paths == (str(EXAMPLE.parent / "examples/episodes"),)
    assert [e.name for e in config.sources.entries] == ["https://feeds.podcastindex.org/pc20.xml"]
    assert config.feeds == FeedSettings()


def test_example_mentions_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for section, keys in SCHEMA.items():
        assert f"[{section}]" in text
        for key in keys:
            assert re.search(rf"^{key} = ", text, re.MULTILINE), key


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"downloads": {}}, r"\[downloads\] unknown section"),
        ({"download": {"jobz": 1}}, r"\[download.jobz\] unknown key"),
        ({"download": {"jobs": 0}}, r"\[download.jobs\] must be a whole number from 1 to 64"),
        ({"download": {"jobs": True}}, r"\[download.jobs\] must be"),
        ({"download": {"timeout": "10"}}, r"\[download.timeout\] must be seconds"),
        ({"download": {"size_mismatch": "maybe"}}, r"\[download.size_mismatch\]"),
        ({"tags": {"id3_version": 2}}, r"\[tags.id3_version\] must be 3 or 4"),
        ({"tags": {"cover": "yes"}}, r"\[tags.cover\] must be true or false"),
        ({"sources": {"paths": "docs"}}, r"\[sources.paths\] must be a list"),
        ({"archive": {"filename": "{nope}.mp3"}}, r"\[archive.filename\] unknown field"),
        ({"archive": 3}, r"\[archive\] must be a table"),
    ],
)
def test_errors_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(data, base=Path("/x"))


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[download\njobs = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"{path}: invalid TOML"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "nope.toml")


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    config = parse_config({"archive": {"dir": "a"}, "sources": {"paths": ["d", "/abs"]}},
                          base=tmp_path)
    assert config.archive.dir == tmp_path / "a"
    assert config.sources.paths == (str(tmp_path / "d"), "/abs")


def test_empty_strings_mean_defaults() -> None:
    config = parse_config({"download": {"user_agent": ""}, "tags": {"image_base_url": ""}},
                          base=Path("/"))
    assert config.download.user_agent.startswith("fetcher/")
    assert config.tags.image_base_url is None


def test_ca_file_is_resolved_and_checked(tmp_path: Path) -> None:
    from support.httpserver import TLS_CERT

    (tmp_path / "ca.pem").write_bytes(TLS_CERT.read_bytes())
    config = parse_config({"download": {"ca_file": "ca.pem"}}, base=tmp_path)
    assert config.download.ca_file == str(tmp_path / "ca.pem")
    assert parse_config({"download": {"ca_file": ""}}, base=tmp_path).download.ca_file is None
    with pytest.raises(ConfigError, match=r"\[download.ca_file\] .*missing.pem: no such file"):
        parse_config({"download": {"ca_file": "missing.pem"}}, base=tmp_path)
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="not a PEM file of certificates"):
        parse_config({"download": {"ca_file": "junk.pem"}}, base=tmp_path)
