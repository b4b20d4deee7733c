"""The public API is what ``fetcher.__all__`` says, and nothing leaks in by accident."""

import inspect
import types
import typing

import fetcher


def test_exported_members_are_the_public_names() -> None:
    """Built from the module itself: every public name is in ``__all__`` and every
    name in ``__all__`` exists (submodules, imported as a side effect, excepted)."""
    public = {
        name for name, value in vars(fetcher).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public | {"__version__"} == set(fetcher.__all__)


def test_public_functions_take_and_return_exported_types() -> None:
    exported = {getattr(fetcher, name) for name in fetcher.__all__}
    for name in ("sync", "run", "load_episodes", "read_sources", "build_plan",
                 "verify_archive", "load_config"):
        hints = typing.get_type_hints(getattr(fetcher, name))
        for hint in hints.values():
            for part in _classes(hint):
                if part.__module__.startswith("fetcher"):
                    assert part in exported, f"{name} uses {part.__name__}, not exported"


def _classes(hint: object) -> list[type]:
    found = [hint] if inspect.isclass(hint) else []
    for arg in typing.get_args(hint):
        found += _classes(arg)
    return found


def test_errors_share_one_root() -> None:
    for name in fetcher.__all__:
        obj = getattr(fetcher, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, fetcher.FetcherError)
