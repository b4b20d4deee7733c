"""The command line: parses arguments, calls the library, renders, maps to exit codes.

Exit codes: 0 all ok, 1 one or more episodes failed (or verify found a problem),
2 usage or configuration error, 3 another sync holds the archive's lock,
130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from fetcher import render
from fetcher.cliargs import build_parser, default_config
from fetcher.config import Config, load_config
from fetcher.errors import (
    ArchiveError,
    ArchiveLockedError,
    ConfigError,
    FetcherError,
    TagError,
)
from fetcher.filters import make_filters
from fetcher.store import Archive
from fetcher.sync import sync

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_INTERRUPTED = 130

log = logging.getLogger("fetcher")


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


def _config(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and default_config().is_file():
        path = default_config()
    config = load_config(path)
    output = getattr(args, "output", None)
    if output is not None:
        config = replace(config, archive=replace(config.archive, dir=output))
    jobs = getattr(args, "jobs", None)
    if jobs is not None:
        if not 1 <= jobs <= 64:
            raise ConfigError("must be from 1 to 64", key="--jobs")
        config = replace(config, download=replace(config.download, jobs=jobs))
    return config


def _json_error(args: argparse.Namespace, code: int, error: BaseException,
                always: bool = True) -> None:
    """With --json, a run that ends in exit 2 or 3 still prints one JSON object, and
    one that fails after ``sync`` began listing episodes ends that object."""
    stream: render.StreamedReport | None = getattr(args, "stream", None)
    if stream is not None and stream.fail(code, str(error) or type(error).__name__):
        return
    if always and getattr(args, "json", False):
        _print_json({"ok": False, "error": {"code": code, "message": str(error)}})


def _print_json(data: Any) -> None:
    """One JSON document on one line (cheap for thousands of episodes; pipe to jq)."""
    sys.stdout.write(render.compact_json(data) + "\n")


# --- commands -----------------------------------------------------------------------


def cmd_sync(args: argparse.Namespace) -> int:
    config = _config(args)
    if not args.sources and not config.sources.names:
        raise ConfigError("no sources: name them on the command line or in [sources] paths")
    filters = make_filters(since=args.since, until=args.until, latest=args.latest,
                           match=args.match, exclude=args.exclude, key="--")
    if args.dry_run:
        report = sync(config, sources=args.sources, dry_run=True, filters=filters)
        if args.json:
            _print_json(render.plan_json(report.plan))
        else:
            print("\n".join(render.plan_text(report.plan)))
        return EXIT_OK
    from fetcher.progress import ProgressView

    bars = sys.stderr.isatty() and not args.quiet
    view = ProgressView(sys.stderr, bars=bars)
    redirect: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if bars:
        from tqdm.contrib.logging import logging_redirect_tqdm

        # While bars are drawn, log lines go through tqdm so that they do not tear them.
        redirect = logging_redirect_tqdm([log])
    # Up-to-date episodes are listed by --json as they are found, otherwise counted:
    # either way a run over a big archive holds nothing per archived episode.
    stream = args.stream = render.StreamedReport(sys.stdout.write) if args.json else None
    try:
        with redirect:
            report = sync(config, sources=args.sources, on_event=view, handle_signals=True,
                          filters=filters, retry_failed=args.retry_failed,
                          keep_up_to_date=False,
                          on_up_to_date=stream.episode if stream is not None else None)
    finally:
        view.close()
    for outcome in report.outcomes:
        if outcome.status.value == "failed" and outcome.episode is None:
            log.error("%s", outcome.error)
    if stream is not None:
        stream.finish(report)
    elif not args.quiet:
        print("\n".join(render.summary_table(report)), file=sys.stderr)
    if report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_verify(args: argparse.Namespace) -> int:
    from fetcher.verify import rebuild_manifest, verify_archive

    config = _config(args)
    archive = Archive(config.archive.dir)
    if args.rebuild:
        if not archive.root.is_dir():
            raise ConfigError(f"{archive.root}: no such directory")
        count = rebuild_manifest(archive)
        print(f"manifest rebuilt from {count} archived files; the next sync re-tags them "
              "and fills in the rest", file=sys.stderr)
    problems = verify_archive(archive, repair=args.repair)
    if args.json:
        _print_json({
            "ok": not problems,
            "problems": [{"guid": p.guid, "path": p.path, "problem": p.problem}
                         for p in problems],
        })
    for problem in problems:
        log.error("%s: %s", problem.path, problem.problem)
    if problems and args.repair:
        print(f"{len(problems)} problems repaired: damaged files moved to .fetcher/damaged/; "
              "the next sync fetches those episodes again", file=sys.stderr)
    if not problems and not args.json and not args.quiet:
        print("archive verified: every file matches the manifest", file=sys.stderr)
    return EXIT_FAILED if problems else EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from fetcher.aio import run_to_end
    from fetcher.ops import read_for_show

    config = _config(args)
    names = list(args.sources) or list(config.sources.names)
    if not names:
        raise ConfigError("no sources: name them on the command line or in [sources] paths")
    loaded = run_to_end(read_for_show(config, names))
    if args.json:
        _print_json([render.entry_json(e) for e in loaded.entries])
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


def cmd_tag(args: argparse.Namespace) -> int:
    from fetcher.ops import tag_file

    config = _config(args)
    if not args.mp3.exists():
        raise ConfigError(f"{args.mp3}: no such file")
    try:
        tagged = tag_file(args.mp3, args.doc, config)
    except TagError as error:
        log.error("%s", error)
        return EXIT_FAILED
    if not args.quiet:
        print(f"tagged {args.mp3}: {tagged.chapters} chapters, {tagged.tag_bytes} tag bytes",
              file=sys.stderr)
    return EXIT_OK


def cmd_export_opml(args: argparse.Namespace) -> int:
    from fetcher.ops import feeds_as_opml

    sys.stdout.write(feeds_as_opml(_config(args)))
    return EXIT_OK


def cmd_completion(args: argparse.Namespace) -> int:
    from argcomplete.shell_integration import shellcode

    sys.stdout.write(shellcode(["fetcher"], shell=args.shell))
    return EXIT_OK


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # a shell asks for completions
        import argcomplete

        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    _setup_logging(args)
    # SIGTERM (systemd, cron's kill) before the download loop takes over its own
    # handling ends the run like Ctrl-C: exit 130, nothing half-written.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    handlers = {"sync": cmd_sync, "verify": cmd_verify, "show": cmd_show, "tag": cmd_tag,
                "export-opml": cmd_export_opml, "completion": cmd_completion}
    try:
        return handlers[args.command](args)
    except ArchiveLockedError as error:
        log.error("%s", error)
        _json_error(args, EXIT_LOCKED, error)
        return EXIT_LOCKED
    except (ConfigError, ArchiveError) as error:
        log.error("%s", error, exc_info=args.verbose)
        _json_error(args, EXIT_USAGE, error)
        return EXIT_USAGE
    except FetcherError as error:
        log.error("%s", error, exc_info=args.verbose)
        _json_error(args, EXIT_FAILED, error, always=False)
        return EXIT_FAILED
    except KeyboardInterrupt as error:
        log.error("interrupted")
        _json_error(args, EXIT_INTERRUPTED, error, always=False)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
