"""Built volumes kept in memory: LRU bounded by bytes, shared by every request of the process.

Building a volume takes seconds, so concurrent requests for the same series wait
for the one build in progress instead of starting their own ("single flight").
A volume larger than the whole budget is still served, just not kept.  This is
only a cache: any node can rebuild any volume from the archive.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, Protocol, TypeVar


class Sized(Protocol):
    @property
    def nbytes(self) -> int: ...


V = TypeVar("V", bound=Sized)


class VolumeCache(Generic[V]):
    """Values by key, evicting the least recently used once ``max_bytes`` is exceeded."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, V] = OrderedDict()
        self._building: dict[str, Future[V]] = {}
        self._lock = threading.Lock()
        self.builds = 0  # how many times a value was built (tests, metrics)
        self.hits = 0

    def get(self, key: str, build: Callable[[], V]) -> V:
        """The value for ``key``, built by ``build()`` at most once however many callers ask."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            future = self._building.get(key)
            owner = future is None
            if future is None:
                future = self._building[key] = Future()
        if not owner:
            return future.result()
        try:
            value = build()
        except BaseException as exc:
            with self._lock:
                del self._building[key]
            future.set_exception(exc)
            raise
        with self._lock:
            self.builds += 1
            del self._building[key]
            if value.nbytes <= self.max_bytes:
                self._items[key] = value
                self._evict()
        future.set_result(value)
        return value

    def peek(self, key: str) -> V | None:
        """The cached value for ``key`` without building or touching its recency."""
        with self._lock:
            return self._items.get(key)

    def discard(self, prefix: str) -> None:
        """Forget every value whose key starts with ``prefix`` (a series changed)."""
        with self._lock:
            for key in [k for k in self._items if k.startswith(prefix)]:
                del self._items[key]

    def resized(self) -> None:
        """Re-apply the byte budget after a cached value grew (derived data added)."""
        with self._lock:
            self._evict()

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(v.nbytes for v in self._items.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def _evict(self) -> None:
        total = sum(v.nbytes for v in self._items.values())
        while total > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            total -= old.nbytes
        if total > self.max_bytes and self._items:
            self._items.popitem(last=False)
