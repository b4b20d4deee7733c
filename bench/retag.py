"""Bytes a re-tag writes: one episode's title changes, the whole process is measured.

    python bench/run.py retag

The archive holds the five real corpus documents with generated audio (the seed plays
110 s); the seed's title is changed and a ``fetcher sync`` re-tags it in place. Bytes
written are the process's own ``wchar`` (every write(2): tag, journal, manifest, logs).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

_CHILD = """
import json, sys
from pathlib import Path
import fetcher
def wchar():
    for line in open("/proc/self/io"):
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0
config = fetcher.load_config(Path(sys.argv[1]))
before = wchar()
report = fetcher.sync(config)
print(json.dumps({"written": wchar() - before,
                  "retagged": report.count(fetcher.Status.RETAGGED)}))
"""


def bench_retag() -> None:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from support.corpus import build_corpus
    from support.httpserver import TestServer

    with TestServer() as server, tempfile.TemporaryDirectory() as tmp:
        corpus = build_corpus(server, Path(tmp))
        config = corpus.config()
        subprocess.run([sys.executable, "-m", "fetcher", "sync", "-c", str(config), "-q"],
                       check=True, timeout=300)
        seed = "ff801bd2-d0a6-4d9d-ae33-c4a56c4c67cf"
        for title in ("A corrected title", "A much longer corrected title " * 4):
            corpus.edit(seed, title=title)
            out = subprocess.run([sys.executable, "-c", _CHILD, str(config)],
                                 capture_output=True, text=True, check=True).stdout
            figures = json.loads(out)
            print(f"re-tag of one episode ({figures['retagged']} re-tagged): "
                  f"{figures['written'] / 1024:.1f} KiB written by the whole process")
