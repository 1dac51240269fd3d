"""The snapshot store interface: one backend per object store."""
from __future__ import annotations

import abc
from typing import BinaryIO, List

MIB = 1024 * 1024
MIN_PART = 8 * MIB          # S3 requires >= 5 MiB parts (but the last)
MAX_PARTS = 10_000          # S3's hard limit


def part_size_for(estimated_bytes: int) -> int:
    """Large enough that 1.5x the estimate fits in 9,000 parts (headroom under S3's 10,000)."""
    need = int(estimated_bytes * 1.5 / 9000) + 1
    size = max(MIN_PART, need)
    return (size + MIB - 1) // MIB * MIB


class Upload(abc.ABC):
    @abc.abstractmethod
    def write(self, chunk: bytes) -> None: ...

    @abc.abstractmethod
    def complete(self) -> int:
        """Make the object visible; returns its size. Only call after the producer succeeded."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Throw away what this upload wrote (and nothing else)."""


class Store(abc.ABC):
    @abc.abstractmethod
    def describe(self) -> str: ...

    @abc.abstractmethod
    def check(self) -> None:
        """Raise PilotError (one line) if the store is missing or not writable."""

    @abc.abstractmethod
    def begin_upload(self, key: str, part_size: int) -> Upload: ...

    @abc.abstractmethod
    def open_read(self, key: str) -> BinaryIO: ...

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def size(self, key: str) -> int: ...

    @abc.abstractmethod
    def list(self, prefix: str) -> List[str]: ...

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object; one already gone is not an error (two prunes may race)."""
