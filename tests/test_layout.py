"""The rules the layout makes visible, checked in fresh interpreters."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import fetcher

PACKAGE = Path(fetcher.__file__).parent


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    return set(result.stdout.split())


@pytest.mark.parametrize("module", ["fetcher.plan", "fetcher.sources", "fetcher.config",
                                    "fetcher", "fetcher.sync"])
def test_planning_loads_neither_mutagen_nor_httpx(module: str) -> None:
    loaded = loaded_after(f"import {module}")
    assert not {m for m in loaded if m.split(".")[0] in ("mutagen", "httpx", "httpcore",
                                                           "tenacity", "tqdm")}


def imports_of(module: str) -> set[str]:
    """The fetcher modules *module* imports, directly or through others (the package's
    own ``__init__``, which gathers the public API, left out)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = PACKAGE.parent / (name.replace(".", "/") + ".py")
        if not path.exists():
            path = PACKAGE.parent / name.replace(".", "/") / "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found = [node.module]
            elif isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            else:
                continue
            todo += [f for f in found if f.startswith("fetcher.")]
    return seen - {module}


def test_network_code_never_imports_tagging() -> None:
    for module in ("fetcher.net.http", "fetcher.net.download", "fetcher.net.reads",
                   "fetcher.net.body", "fetcher.net.sockets", "fetcher.net.client"):
        assert not {m for m in imports_of(module) if m.startswith("fetcher.tagging")}
    loaded = loaded_after("import fetcher.net.download")
    assert "mutagen" not in loaded


def test_tag_spec_is_pure() -> None:
    loaded = loaded_after("import fetcher.tagging.spec")
    assert "mutagen" not in loaded and "httpx" not in loaded


def test_no_module_is_over_400_lines() -> None:
    sizes = {p.relative_to(PACKAGE): len(p.read_text().splitlines())
             for p in PACKAGE.rglob("*.py")}
    assert {p: n for p, n in sizes.items() if n > 400} == {}


def test_type_information_ships() -> None:
    assert (PACKAGE / "py.typed").exists()
