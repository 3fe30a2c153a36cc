"""Recurrent cells as pure functions, and the registry that names them.

    cell = rnnlab.cells.get("lstm", forget_bias=1.0)
    cell = rnnlab.cells.get("mylab.cells:my_lstm")        # a user's factory by dotted path
    rnnlab.cells.register("my_lstm", my_lstm)             # or register it once by name

A factory is any callable ``factory(**options) -> Cell``.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable

from rnnlab.cells.base import Cell
from rnnlab.cells.gru import gru
from rnnlab.cells.lstm import lstm
from rnnlab.cells.rnn import rnn

_REGISTRY: dict[str, Callable[..., Cell]] = {"rnn": rnn, "lstm": lstm, "gru": gru}


def register(name: str, factory: Callable[..., Cell]) -> None:
    """Makes ``get(name, **options)`` call ``factory(**options)``."""
    if not callable(factory):
        raise TypeError(f"register({name!r}, ...): factory must be callable, got {factory!r}")
    _REGISTRY[name] = factory


def names() -> list[str]:
    """The registered cell names."""
    return sorted(_REGISTRY)


def resolve_factory(name: str) -> Callable[..., Cell]:
    """The factory for a registered name or a ``package.module:factory`` dotted path."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"cell name must be a non-empty string, got {name!r}")
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ValueError(f"cell {name!r}: cannot import module {module_name!r} ({e})") from e
        try:
            return getattr(module, attr)
        except AttributeError:
            raise ValueError(f"cell {name!r}: module {module_name!r} has no {attr!r}") from None
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown cell {name!r}{hint}; known cells: {names()}, "
            "or a dotted path 'package.module:factory'"
        )
    return _REGISTRY[name]


def get(name: str, **options) -> Cell:
    """Builds a cell by registered name or dotted path, with the factory's options."""
    factory = resolve_factory(name)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        params = signature.parameters.values()
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            known = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
            unknown = sorted(set(options) - set(known))
            if unknown:
                raise ValueError(f"cell {name!r}: unknown option(s) {unknown}; options: {known}")
    cell = factory(**options)
    if not isinstance(cell, Cell):
        raise TypeError(f"cell {name!r}: the factory returned {type(cell).__name__}, not a Cell")
    return cell


__all__ = ["Cell", "get", "gru", "lstm", "names", "register", "resolve_factory", "rnn"]
