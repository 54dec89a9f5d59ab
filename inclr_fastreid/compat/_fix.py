"""The decorator that names a host fix (what ``applied_fixes()`` lists)."""
from __future__ import annotations

from typing import Callable


def fix(name: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """Mark a function as the host fix called ``name``."""
    def deco(fn: Callable[[], None]) -> Callable[[], None]:
        fn._compat_name = name  # type: ignore[attr-defined]
        return fn

    return deco
