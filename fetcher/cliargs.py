"""The command line's grammar: every command with a description, every argument with a
help line, and examples; ``fetcher --help`` reads like a short manual page."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fetcher._version import __version__

EXIT_USAGE = 2


def default_config() -> Path:
    """``$XDG_CONFIG_HOME/fetcher/config.toml`` (``~/.config`` when unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fetcher" / "config.toml"


MAIN_DESCRIPTION = """\
Mirror podcasts into a verified, chapterized archive: feeds (RSS, Atom, Podcasting 2.0),
OPML lists and episode documents in; whole, tagged audio with chapters and transcripts
out; a manifest that lets the next run do only what changed.
"""

MAIN_EPILOG = f"""\
configuration:
  Every command reads a TOML file given with -c; without -c, {default_config()}
  ($XDG_CONFIG_HOME/fetcher/config.toml) is read when it exists. config.example.toml
  documents every key.

exit codes:
  0 ok   1 an episode or source failed this run   2 usage, configuration or archive
  error   3 another sync holds the archive   130 interrupted (partial files are kept)

examples:
  fetcher sync -c config.toml --dry-run      what would be downloaded, and how much
  fetcher sync -c config.toml -q             the cron job: errors only
  fetcher sync https://example.com/feed.xml -o ~/podcasts --latest 5
  fetcher verify -c config.toml              re-hash every archived file
  fetcher completion bash > ~/.local/share/bash-completion/completions/fetcher
"""

SYNC_EXAMPLES = """\
examples:
  fetcher sync -c config.toml --dry-run
  fetcher sync -c config.toml --json | jq .counts
  fetcher sync https://example.com/feed.xml -o archive --since 2024-01-01
  fetcher sync -c config.toml --match 'interview' --exclude 'rerun|best of'
"""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"fetcher: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fetcher", description=MAIN_DESCRIPTION, epilog=MAIN_EPILOG,
                    formatter_class=_formatter)
    parser.add_argument("--version", action="version", version=f"fetcher {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser,
                                     metavar="COMMAND")

    def command(name: str, summary: str, description: str, epilog: str = ""
                ) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=description,
                                   epilog=epilog, formatter_class=_formatter)

    run = command("sync", "download, verify, tag and record what is new",
                  "Bring the archive up to date with the sources: download new episodes "
                  "(resuming partial\nones), re-tag changed ones, fetch missing "
                  "transcripts, and leave the rest alone.", SYNC_EXAMPLES)
    run.add_argument("sources", nargs="*", metavar="SOURCE",
                     help="a path or http(s) URL: episode documents, a feed or an OPML "
                          "list (default: the config's sources)")
    _add_config(run)
    run.add_argument("-o", "--output", type=Path, metavar="DIR",
                     help="the archive directory ([archive] dir)")
    run.add_argument("-j", "--jobs", type=int, metavar="N",
                     help="concurrent downloads ([download] jobs)")
    run.add_argument("--dry-run", action="store_true",
                     help="print the plan with its totals; write nothing")
    run.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    run.add_argument("--retry-failed", action="store_true",
                     help="try episodes that failed for good (404, not audio) now, "
                          "not on their schedule")
    _add_filters(run)
    _add_verbosity(run)

    check = command("verify", "re-hash archived files against the manifest",
                    "Re-read every archived file and the files beside it and compare "
                    "them with the manifest.",
                    "examples:\n  fetcher verify -c config.toml\n"
                    "  fetcher verify -c config.toml --repair\n"
                    "  fetcher verify -o archive --rebuild")
    _add_config(check)
    check.add_argument("-o", "--output", type=Path, metavar="DIR",
                       help="the archive directory ([archive] dir)")
    check.add_argument("--json", action="store_true", help="print one JSON report on stdout")
    fix = check.add_mutually_exclusive_group()
    fix.add_argument("--repair", action="store_true",
                     help="move damaged files to .fetcher/damaged/ so that the next sync "
                          "fetches them again")
    fix.add_argument("--rebuild", action="store_true",
                     help="rebuild a lost or damaged manifest from the archived files' tags")
    _add_verbosity(check)

    show = command("show", "list the episodes sources hold",
                   "List every episode of the sources with its size and chapters, every "
                   "skipped item with its\nreason, every error with its file or feed. "
                   "Nothing is written.",
                   "examples:\n  fetcher show https://example.com/feed.xml\n"
                   "  fetcher show -c config.toml --json | jq '.[].title'")
    show.add_argument("sources", nargs="*", metavar="SOURCE",
                      help="a path or http(s) URL (default: the config's sources)")
    _add_config(show)
    show.add_argument("--json", action="store_true", help="print one JSON array on stdout")
    _add_verbosity(show)

    tag = command("tag", "tag one MP3 you have from one episode document",
                  "Write the ID3 tags and chapters an episode document describes into an "
                  "MP3 (through a copy).",
                  "example:\n  fetcher tag 0603.mp3 episodes/0603.md")
    tag.add_argument("mp3", type=Path, metavar="MP3", help="the MP3 file to tag")
    tag.add_argument("doc", type=Path, metavar="DOC", help="the episode document to tag from")
    _add_config(tag)
    _add_verbosity(tag)

    export = command("export-opml", "write the archive's feeds as an OPML list",
                     "Print the feeds of the config and those the archive remembers as "
                     "OPML 2.0.",
                     "example:\n  fetcher export-opml -c config.toml > podcasts.opml")
    _add_config(export)
    export.add_argument("-o", "--output", type=Path, metavar="DIR",
                        help="the archive directory ([archive] dir)")
    _add_verbosity(export)

    complete = command("completion", "print a shell completion script",
                       "Print the completion script for bash, zsh or fish (argcomplete).",
                       "examples:\n  fetcher completion bash > "
                       "~/.local/share/bash-completion/completions/fetcher\n"
                       "  fetcher completion fish > ~/.config/fish/completions/fetcher.fish")
    complete.add_argument("shell", choices=["bash", "zsh", "fish"], help="the shell")
    return parser


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, metavar="FILE",
                        help=f"TOML configuration (default: {default_config()} when it "
                             "exists)")


def _add_filters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "filters", "Which episodes to archive (per source in the config too). Episodes "
                   "filtered out are\nskipped with the reason and not remembered, so "
                   "widening a filter later just works.")
    group.add_argument("--since", metavar="DATE", help="only episodes published on or "
                                                       "after DATE (YYYY-MM-DD)")
    group.add_argument("--until", metavar="DATE", help="only episodes published on or "
                                                       "before DATE")
    group.add_argument("--latest", type=int, metavar="N",
                       help="only the N newest episodes of each show")
    group.add_argument("--match", metavar="REGEX", help="only titles that match REGEX")
    group.add_argument("--exclude", metavar="REGEX", help="no titles that match REGEX")


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true",
                       help="errors and one-line summaries of repeated ones only (cron)")
    group.add_argument("-v", "--verbose", action="store_true",
                       help="debug output, and a traceback with each error")
