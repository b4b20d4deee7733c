"""fetcher's benchmarks: loopback only, generated audio, figures printed (not asserted).

    python bench/run.py download [--files 8] [--size-mb 57.6] [--small 200] [--runs 5]
    python bench/run.py noop [--episodes 2000 10000 50000] [--runs 5]
    python bench/run.py feeds [--feeds 100] [--runs 5]
    python bench/run.py retag
    python bench/run.py all --smoke          # seconds-long version, run by CI

``download`` serves the same files to ``fetcher sync``, ``curl --parallel-max 4`` and
(when installed) ``aria2c -j4`` from one sendfile server on 127.0.0.1 and reports wall
time, throughput, CPU seconds, peak RSS and, for fetcher, bytes written per byte
archived. ``noop`` fabricates an archive of N archived episodes (documents, files and
manifest) and times a ``fetcher sync`` that has nothing to do.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

from server import FileServer  # noqa: E402
from support.mp3factory import FRAME_BYTES, FRAME_MS, mp3_bytes  # noqa: E402

from fetcher.settings import TagSettings  # noqa: E402
from fetcher.sources import load_episodes  # noqa: E402
from fetcher.store.local import Archive  # noqa: E402
from fetcher.store.manifest import Manifest, Record  # noqa: E402
from fetcher.tagging.spec import tag_fingerprint  # noqa: E402


@dataclass
class Measure:
    wall: float
    cpu: float
    rss_mb: float
    extra: dict[str, float]


def measured(argv: list[str]) -> tuple[Measure, str]:
    """Run *argv*: wall time, CPU seconds (from wait4) and peak RSS.

    Peak RSS is the process's own VmHWM, polled from /proc while it runs: the
    ru_maxrss of a forked child also counts the pages of this (large) Python process.
    """
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        peak_kb = 0
        status_file = Path(f"/proc/{process.pid}/status")
        while True:
            with contextlib.suppress(OSError, ValueError):
                for line in status_file.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak_kb = max(peak_kb, int(line.split()[1]))
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.005)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({process.returncode}): {stderr[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return Measure(wall, cpu, peak_kb / 1024, {}), stdout


def make_files(root: Path, count: int, size: int, prefix: str) -> list[Path]:
    frames = max(1, size // FRAME_BYTES)
    files = []
    for index in range(count):
        path = root / f"{prefix}{index:04d}.mp3"
        path.write_bytes(mp3_bytes(frames * FRAME_MS, seed=index))
        files.append(path)
    return files


def make_docs(path: Path, files: list[Path], server: FileServer) -> None:
    episodes = []
    for index, file in enumerate(files):
        duration_s = file.stat().st_size // FRAME_BYTES * FRAME_MS / 1000
        chapters = [{"startTime": round(duration_s * i / 12, 3), "title": f"Chapter {i + 1}"}
                    for i in range(12)]
        episodes.append({
            "type": "episode", "show_slug": "bench", "show_name": "Bench Show",
            "episode": index + 1, "episode_guid": f"bench-{file.stem}",
            "title": f"Episode {file.stem}", "date": "2025-01-01T00:00:00Z",
            "podcast_file": server.url(file.name), "podcast_bytes": file.stat().st_size,
            "podcast_chapters": {"version": "1.2.0", "chapters": chapters},
        })
    path.write_text(json.dumps(episodes), encoding="utf-8")


FETCHER_CHILD = """
import sys, json
from pathlib import Path
from dataclasses import replace
import fetcher
config = fetcher.load_config(Path(sys.argv[1]))
report = fetcher.sync(config)
io = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
print(json.dumps({"ok": report.ok, "wchar": int(io["wchar"]),
                  "downloaded": report.count(fetcher.Status.DOWNLOADED)}))
"""


def run_fetcher(work: Path, docs: Path, jobs: int) -> Measure:
    archive = work / "fetcher-archive"
    shutil.rmtree(archive, ignore_errors=True)
    config = work / "bench.toml"
    config.write_text(
        f'[archive]\ndir = "{archive}"\n[sources]\npaths = ["{docs}"]\n'
        f"[download]\njobs = {jobs}\nper_host = {jobs}\n[tags]\ncover = false\n",
        encoding="utf-8",
    )
    measure, out = measured([sys.executable, "-c", FETCHER_CHILD, str(config)])
    result = json.loads(out.strip().splitlines()[-1])
    if not result["ok"]:
        raise SystemExit("fetcher sync reported failures")
    archived = sum(p.stat().st_size for p in archive.rglob("*.mp3")
                   if ".fetcher" not in p.parts)
    measure.extra["write_amplification"] = result["wchar"] / archived
    return measure


def run_curl(work: Path, urls: list[str]) -> Measure:
    out = work / "curl"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    argv = ["curl", "--silent", "--fail", "--parallel", "--parallel-max", "4"]
    for index, url in enumerate(urls):
        argv += ["-o", str(out / f"{index}.mp3"), url]
    return measured(argv)[0]


def run_curl_fsync(work: Path, urls: list[str]) -> Measure:
    """curl, then an fsync of every file (coreutils' sync with file arguments): the
    durable baseline, since fetcher fsyncs each file before it enters the archive."""
    out = work / "curl-fsync"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    targets = [str(out / f"{index}.mp3") for index in range(len(urls))]
    curl = ["curl", "--silent", "--fail", "--parallel", "--parallel-max", "4"]
    for target, url in zip(targets, urls, strict=True):
        curl += ["-o", target, url]
    command = shlex.join(curl) + " && sync " + shlex.join(targets)
    return measured(["sh", "-c", command])[0]


def podcast_archiver() -> str | None:
    """podcast-archiver, from $FETCHER_BENCH_PODCAST_ARCHIVER or the PATH (install it in
    a virtual environment of its own: ``pip install podcast-archiver``)."""
    named = os.environ.get("FETCHER_BENCH_PODCAST_ARCHIVER")
    return named if named and Path(named).exists() else shutil.which("podcast-archiver")


def write_feed(path: Path, files: list[Path], server: FileServer) -> None:
    """An RSS feed of *files*, for the tools that start from a feed."""
    items = []
    for index, file in enumerate(files):
        items.append(
            f"<item><title>Episode {file.stem}</title><guid>bench-{file.stem}</guid>"
            f"<pubDate>Wed, 01 Jan 2025 {index // 3600:02d}:{index // 60 % 60:02d}:"
            f"{index % 60:02d} +0000</pubDate>"
            f'<enclosure url="{server.url(file.name)}" length="{file.stat().st_size}"'
            ' type="audio/mpeg"/></item>')
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        "<title>Bench Show</title><link>http://127.0.0.1/</link><description>bench"
        f"</description>{''.join(items)}</channel></rss>", encoding="utf-8")


def run_podcast_archiver(work: Path, feed_url: str) -> Measure | None:
    program = podcast_archiver()
    if program is None:
        return None
    out = work / "podcast-archiver"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    config = work / "podcast-archiver.yaml"
    config.write_text("{}\n", encoding="utf-8")
    database = work / "podcast-archiver.db"
    database.unlink(missing_ok=True)
    return measured([program, "--config", str(config), "--database", str(database),
                     "-d", str(out), "-C", "4", "-q", "-f", feed_url])[0]


def run_aria2(work: Path, urls: list[str]) -> Measure | None:
    if shutil.which("aria2c") is None:
        return None
    out = work / "aria2"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    listing = work / "aria2.txt"
    listing.write_text("\n".join(urls) + "\n", encoding="utf-8")
    return measured(["aria2c", "-q", "-j4", "-x1", "--allow-overwrite=true",
                     "--auto-file-renaming=false", "--file-allocation=none",
                     "-d", str(out), "-i", str(listing)])[0]


def median(measures: list[Measure]) -> Measure:
    def mid(values: list[float]) -> float:
        return statistics.median(values)

    extra_keys = measures[0].extra.keys()
    return Measure(mid([m.wall for m in measures]), mid([m.cpu for m in measures]),
                   max(m.rss_mb for m in measures),
                   {k: mid([m.extra[k] for m in measures]) for k in extra_keys})


def bench_download(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="fetcher-bench-") as tmp:
        work = Path(tmp)
        served = work / "served"
        served.mkdir()
        sets = {
            f"{args.files} x {args.size_mb} MB": make_files(
                served, args.files, int(args.size_mb * 1e6), "big"),
            f"{args.small} x {args.small_mb} MB": make_files(
                served, args.small, int(args.small_mb * 1e6), "small"),
        }
        with FileServer(served) as server:
            for label, files in sets.items():
                total = sum(f.stat().st_size for f in files)
                urls = [server.url(f.name) for f in files]
                docs = work / f"docs-{label.split()[0]}.json"
                make_docs(docs, files, server)
                feed = served / f"feed-{label.split()[0]}.xml"
                write_feed(feed, files, server)
                results: dict[str, list[Measure]] = {
                    "fetcher": [], "curl": [], "curl+fsync": [], "aria2c": [],
                    "podcast-archiver": []}
                runners: dict[str, Callable[[], Measure | None]] = {
                    "fetcher": partial(run_fetcher, work, docs, 4),
                    "curl": partial(run_curl, work, urls),
                    "curl+fsync": partial(run_curl_fsync, work, urls),
                    "aria2c": partial(run_aria2, work, urls),
                    "podcast-archiver": partial(run_podcast_archiver, work,
                                                server.url(feed.name)),
                }
                for _ in range(args.runs):
                    for tool, runner in runners.items():
                        measure = runner() if tool in args.tools else None
                        if measure is not None:
                            results[tool].append(measure)
                print(f"\n## {label} ({total / 1e6:.1f} MB), median of {args.runs}")
                print(f"{'tool':<10}{'wall s':>9}{'MB/s':>9}{'CPU s':>8}"
                      f"{'CPU s/GB':>10}{'RSS MB':>9}{'written/archived':>18}")
                for tool, measures in results.items():
                    if not measures:
                        print(f"{tool:<10} not run (or not installed)")
                        continue
                    m = median(measures)
                    amp = m.extra.get("write_amplification")
                    print(f"{tool:<10}{m.wall:>9.2f}{total / 1e6 / m.wall:>9.0f}{m.cpu:>8.2f}"
                          f"{m.cpu / (total / 1e9):>10.2f}{m.rss_mb:>9.1f}"
                          f"{(f'{amp:.3f}' if amp else '-'):>18}")
                if not results["fetcher"]:
                    continue
                f = median(results["fetcher"])
                for tool, measures in results.items():
                    if tool != "fetcher" and measures and results["fetcher"]:
                        print(f"fetcher wall / {tool} wall: {f.wall / median(measures).wall:.2f}")
                print(f"fetcher CPU per episode: {f.cpu / len(files) * 1000:.1f} ms")


def fabricate_archive(work: Path, count: int) -> Path:
    """N archived episodes: documents, small files, and manifest rows that match."""
    docs = work / "docs"
    docs.mkdir()
    for index in range(count):
        (docs / f"{index:05d}.md").write_text(json.dumps({
            "type": "episode", "show_slug": "bench", "show_name": "Bench Show",
            "episode": index, "episode_guid": f"guid-{index}",
            "title": f"Episode number {index}", "date": "2025-01-01T00:00:00Z",
            "podcast_file": f"http://127.0.0.1:9/{index}.mp3", "podcast_bytes": 100_000,
            "podcast_chapters": {"chapters": [{"startTime": 0, "title": "Intro"},
                                              {"startTime": 60, "title": "Main"}]},
        }) + "\n\nShow notes for the episode.\n", encoding="utf-8")
    archive = Archive(work / "archive")
    archive.prepare()
    settings = TagSettings()
    loaded = load_episodes([docs])
    with Manifest.open(archive.manifest_path) as manifest:
        records = []
        for episode in loaded.episodes:
            relative = f"bench/{episode.guid}.mp3"
            path = archive.root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"\0" * 1000)
            records.append(Record(
                episode.guid, episode.show_slug, str(episode.source), episode.audio_url,
                path=relative, expected_bytes=episode.expected_bytes, file_bytes=1000,
                tag_hash=tag_fingerprint(episode, settings),
            ))
        manifest.save_many(records)
    config = work / "noop.toml"
    config.write_text(f'[archive]\ndir = "{archive.root}"\n[sources]\npaths = ["{docs}"]\n',
                      encoding="utf-8")
    return config


def bench_noop(args: argparse.Namespace) -> None:
    for count in args.episodes:
        with tempfile.TemporaryDirectory(prefix="fetcher-noop-") as tmp:
            config = fabricate_archive(Path(tmp), count)
            _, out = measured([sys.executable, "-m", "fetcher", "sync", "-c", str(config),
                               "--json"])
            counts = json.loads(out)["counts"]
            if counts["up_to_date"] != count:
                raise SystemExit(f"no-op run did work: {counts}")
            # The first run that counts (rather than lists) up-to-date episodes settles
            # the documents; later ones count them from their files' sizes.
            first, _ = measured([sys.executable, "-m", "fetcher", "sync", "-c", str(config),
                                 "--quiet"])
            print(f"no-op sync --quiet  over {count:>6} archived episodes, first run "
                  f"(settles the documents): {first.wall:.3f} s wall, {first.cpu:.2f} CPU s, "
                  f"peak RSS {first.rss_mb:.1f} MB")
            for flag in ("--quiet", "--json"):
                measures = [
                    measured([sys.executable, "-m", "fetcher", "sync", "-c", str(config), flag])[0]
                    for _ in range(args.runs)
                ]
                m = median(measures)
                print(f"no-op sync {flag:<8} over {count:>6} archived episodes: {m.wall:.3f} s "
                      f"wall (median of {args.runs}), {m.cpu:.2f} CPU s, "
                      f"peak RSS {m.rss_mb:.1f} MB")


def compile_bytecode() -> None:
    """fetcher's bytecode, written once before anything is timed, as pip writes it when
    it installs the package: a checkout (or an editable install) run with
    ``PYTHONDONTWRITEBYTECODE`` set would otherwise compile fetcher's modules again in
    every child process (about 0.1 CPU s each)."""
    import compileall

    compileall.compile_dir(HERE.parent / "fetcher", quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=["download", "noop", "feeds", "retag", "all"])
    parser.add_argument("--feeds", type=int, default=100)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--size-mb", type=float, default=57.6)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--small-mb", type=float, default=1.0)
    parser.add_argument("--episodes", type=int, nargs="+", default=[2000, 10000, 50000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tools", type=lambda text: set(text.split(",")),
                        default={"fetcher", "curl", "curl+fsync", "aria2c", "podcast-archiver"},
                        help="download: which tools to run, comma-separated")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.files, args.size_mb, args.small, args.small_mb = 2, 2.0, 5, 0.2
        args.episodes, args.runs, args.feeds = [200], 1, 5
    print(f"fetcher benchmarks on {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    compile_bytecode()
    if args.which in ("download", "all"):
        bench_download(args)
    if args.which in ("noop", "all"):
        bench_noop(args)
    if args.which in ("feeds", "all"):
        from feeds import bench_feeds

        bench_feeds(args.runs, args.feeds)
    if args.which in ("retag", "all"):
        from retag import bench_retag

        bench_retag()


if __name__ == "__main__":
    main()
