"""The command line: parses arguments, calls the library, renders, maps to exit codes.

Exit codes: 0 all ok, 1 one or more episodes failed, 2 usage or configuration error,
3 another sync holds the archive's lock, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fetcher import __version__, render
from fetcher.sources import load_episodes

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_INTERRUPTED = 130

log = logging.getLogger("fetcher")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"fetcher: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fetcher", description="Mirror podcasts into a verified archive.")
    parser.add_argument("--version", action="version", version=f"fetcher {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    show = commands.add_parser("show", help="list what episode documents contain")
    show.add_argument("sources", nargs="+", type=Path, metavar="SOURCE")
    show.add_argument("--json", action="store_true", help="print one JSON array")
    _add_verbosity(show)
    return parser


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="only errors")
    group.add_argument("-v", "--verbose", action="store_true", help="debug output")


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.INFO
    if getattr(args, "quiet", False):
        level = logging.ERROR
    elif getattr(args, "verbose", False):
        level = logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("fetcher: %(levelname)s: %(message)s"))
    root = logging.getLogger("fetcher")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def cmd_show(args: argparse.Namespace) -> int:
    loaded = load_episodes(args.sources)
    if args.json:
        json.dump([render.entry_json(e) for e in loaded.entries], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for entry in loaded.entries:
            for line in render.entry_text(entry):
                print(line)
        print(
            render.show_summary(len(loaded.episodes), len(loaded.skipped), len(loaded.errors))
        )
    for error in loaded.errors:
        log.error("%s", error)
    return EXIT_FAILED if loaded.errors else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args)
    handlers = {"show": cmd_show}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        log.error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
