"""Running a coroutine from code that runs no event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_to_end(work: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(work)``, with the result handed out through a list: asyncio.run
    formats its main task, result included, when it puts the SIGINT handler back, and a
    result listing thousands of episodes took seconds to format."""
    results: list[T] = []

    async def main() -> None:
        results.append(await work)

    asyncio.run(main())
    return results[0]
