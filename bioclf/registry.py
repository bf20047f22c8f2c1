"""Name -> builder registries (a dict plus a decorator, as in timm).

Every configurable choice (backbone, augmentation, optimizer, scheduler, loss) lives in a
Registry, so the spec validator can list the valid names and the error for a typo names the
close matches.
"""

from __future__ import annotations

import difflib
import re
from typing import Callable, Iterator, TypeVar

from bioclf.errors import BioclfError

F = TypeVar("F", bound=Callable)


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Callable] = {}

    def register(self, name: str | None = None) -> Callable[[F], F]:
        def add(fn: F) -> F:
            key = name or fn.__name__
            if key in self._items:
                raise ValueError(f"{self.kind} {key!r} registered twice")
            self._items[key] = fn
            return fn

        return add

    def get(self, name: str) -> Callable:
        if name not in self._items:
            raise BioclfError(self.unknown_message(name))
        return self._items[name]

    def unknown_message(self, name: str) -> str:
        return unknown_message(self.kind, name, self.names())

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def unknown_message(kind: str, name: str, valid) -> str:
    """``unknown <kind> 'x' (did you mean y?); valid: a, b, c``: the one wording of every registry."""
    valid = sorted(valid)
    close = difflib.get_close_matches(str(name), valid, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return f"unknown {kind} {name!r}{hint}; valid: {', '.join(valid)}"


def known_name(name: str, valid, kind: str) -> str:
    """``name`` if it is in ``valid`` (a Registry or any collection of names), else a ValueError
    listing the valid names (the schema's one validator for every registry-backed field)."""
    if name not in valid:
        raise ValueError(unknown_message(kind, name, valid))
    return name


DEVICE_NAMES = "auto, cpu, mps, cuda or cuda:N"


def check_device_name(value: str) -> str:
    """A device the config and ``predict --device`` accept (ValueError otherwise); whether it is
    present is decided when a run starts (bioclf.engine.device.resolve_device)."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
        raise ValueError(f"device must be {DEVICE_NAMES}, not {value!r}")
    return value
