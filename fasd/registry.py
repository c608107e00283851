"""One registry type for every pluggable kind (teachers, students, fine-tuning methods, export formats, ...).

Members register themselves by name when their module is imported; a registry imports its member modules the
first time it is asked what it holds, so ``--help`` and every error list what is registered and adding a member
touches its own module and the registry's member list only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from fasd.errors import FasdError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind. ``flag`` is the CLI option that picks one; ``unknown`` is the one-line error
    for a name that is not registered (fields: flag, name, names)."""

    def __init__(self, flag: str, members: tuple[str, ...] = (),
                 unknown: str = "unknown {flag} '{name}'; registered: {names}"):
        self.flag, self.members, self.unknown = flag, members, unknown
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.flag} {name} registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str, make: Callable[[Callable], T]) -> Callable[[Callable], Callable]:
        """A decorator registering ``make(function)`` under ``name``; the function itself is returned."""
        def decorate(function: Callable) -> Callable:
            self.add(name, make(function))
            return function
        return decorate

    def all(self) -> dict[str, T]:
        for module in self.members:
            importlib.import_module(module)
        return dict(self._entries)

    def get(self, name: str) -> T:
        entries = self.all()
        if name not in entries:
            raise FasdError(self.unknown.format(flag=self.flag, name=name, names=", ".join(entries)))
        return entries[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self.all())

    # Read like the dict it replaces: ``name in registry``, ``for name in registry``, ``registry[name]``.
    __getitem__ = get

    def __contains__(self, name: object) -> bool:
        return name in self.all()

    def __iter__(self) -> Iterator[str]:
        return iter(self.all())
