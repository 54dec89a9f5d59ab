"""Idempotent registration into FastReID's registries.

FastReID's ``Registry`` asserts on a duplicate name, so importing the add-on twice (a reload, or
the same file reached under two module paths) would crash (docs/design.md §9). ``register_once``
skips the second registration when it is the same class, and still refuses a *different* class
under a taken name.
"""
from __future__ import annotations

import inspect
import os
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def _source_file(obj: Any) -> str | None:
    """File that defines ``obj``'s methods (works for modules missing from ``sys.modules``)."""
    for value in vars(obj).values():
        func = getattr(value, "__func__", value)  # classmethod / staticmethod
        try:
            func = inspect.unwrap(func)  # through decorators such as fastreid's @configurable
        except ValueError:
            continue
        code = getattr(func, "__code__", None)
        if code is not None:
            return os.path.realpath(code.co_filename)
    return None


def _same_definition(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if getattr(a, "__qualname__", None) != getattr(b, "__qualname__", None):
        return False
    if getattr(a, "__module__", None) == getattr(b, "__module__", None):
        return True
    fa, fb = _source_file(a), _source_file(b)
    return fa is not None and fa == fb


def register_once(registry: Any) -> Callable[[T], T]:
    """Decorator: register ``obj`` under ``obj.__name__`` unless the same class is already there."""

    def deco(obj: T) -> T:
        name = obj.__name__  # type: ignore[attr-defined]
        existing = registry._obj_map.get(name)
        if existing is None:
            registry.register(obj)
        elif not _same_definition(existing, obj):
            raise KeyError(
                f"'{name}' is already registered in FastReID's {registry._name} registry by "
                f"{existing.__module__}.{existing.__qualname__}; rename one of the two classes."
            )
        return obj

    return deco
