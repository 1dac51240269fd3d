"""A directory as snapshot store (tests, single hosts, NFS). Objects appear only by atomic rename."""
from __future__ import annotations

import logging
import os
from typing import BinaryIO, List

from ..errors import PilotError
from .base import Store, Upload

log = logging.getLogger(__name__)


def _store_error(path: str, exc: OSError) -> PilotError:
    """A store that went away mid-upload (unmounted, read-only, full): one line, not a traceback."""
    return PilotError(f"snapshot store: {exc.strerror or exc} writing {path}; check that store_path is mounted "
                      "and writable, then retry the snapshot")


class _LocalUpload(Upload):
    def __init__(self, path: str):
        self.path = path
        self.partial = f"{path}.partial-{os.getpid()}"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self.fh = open(self.partial, "wb")
        except OSError as exc:
            raise _store_error(self.partial, exc) from None
        self.n = 0

    def write(self, chunk: bytes) -> None:
        try:
            self.fh.write(chunk)
        except OSError as exc:
            raise _store_error(self.partial, exc) from None
        self.n += len(chunk)

    def complete(self) -> int:
        try:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            os.replace(self.partial, self.path)
        except OSError as exc:
            raise _store_error(self.path, exc) from None
        return self.n

    def abort(self) -> None:
        try:
            if not self.fh.closed:
                self.fh.close()
        except OSError:
            pass                              # the store is gone: nothing more to flush
        try:
            os.unlink(self.partial)           # ours alone: created by this upload
        except FileNotFoundError:
            # The store went away under us (unmounted, say): the partial object may reappear with it.
            # Listings skip it; name it so an operator can remove it.
            log.warning("snapshot store: could not remove the partial upload %s (the store is not there); "
                        "snapshots ignore it, remove it once the store is back", self.partial)
        except OSError as exc:
            log.warning("snapshot store: could not remove the partial upload %s: %s; snapshots ignore it",
                        self.partial, exc.strerror)


class LocalStore(Store):
    def __init__(self, root: str):
        self.root = root

    def _p(self, key: str) -> str:
        key = key.lstrip("/")
        if ".." in key.split("/"):
            raise PilotError(f"invalid store key {key!r}")
        return os.path.join(self.root, key)

    def describe(self) -> str:
        return f"directory {self.root}"

    def check(self) -> None:
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            raise PilotError(f"snapshot directory {self.root} cannot be created: {exc.strerror}; check "
                             "store_path") from None
        if not os.access(self.root, os.W_OK):
            raise PilotError(f"snapshot directory {self.root} is not writable; check store_path")

    def begin_upload(self, key: str, part_size: int) -> Upload:
        return _LocalUpload(self._p(key))

    def open_read(self, key: str) -> BinaryIO:
        try:
            return open(self._p(key), "rb")
        except FileNotFoundError:
            raise PilotError(f"snapshot object {self._p(key)} does not exist") from None

    def put_bytes(self, key: str, data: bytes) -> None:
        up = self.begin_upload(key, 0)
        try:
            up.write(data)
            up.complete()
        except BaseException:
            up.abort()
            raise

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as fh:
            return fh.read()

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._p(key))

    def size(self, key: str) -> int:
        return os.path.getsize(self._p(key))

    def delete(self, key: str) -> None:
        path = self._p(key)
        try:
            os.remove(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise PilotError(f"snapshot store: {exc.strerror or exc} removing {path}; check that store_path is "
                             "mounted and writable, then prune again") from None
        # Empty directories left behind go too, up to (not including) the store's root.
        d = os.path.dirname(path)
        while os.path.abspath(d) != os.path.abspath(self.root):
            try:
                os.rmdir(d)
            except OSError:
                break
            d = os.path.dirname(d)

    def list(self, prefix: str) -> List[str]:
        base = self._p(prefix) if prefix else self.root
        out = []
        top = base if os.path.isdir(base) else os.path.dirname(base)
        for d, _, files in os.walk(top):
            for f in files:
                if ".partial-" in f:
                    continue
                rel = os.path.relpath(os.path.join(d, f), self.root).replace(os.sep, "/")
                if rel.startswith(prefix.lstrip("/")):
                    out.append(rel)
        return sorted(out)
