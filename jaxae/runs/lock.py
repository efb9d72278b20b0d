"""One jaxae process per folder: an exclusive `fcntl.flock` on FOLDER/.jaxae.lock.

The kernel drops the lock when its process ends, however it ends (SIGKILL included), so a lock
is never stale; the file keeps the PID of the last holder, which a refused process names.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = ".jaxae.lock"


class FolderBusyError(OSError):
    """Another live process holds the folder."""


class FolderLock:
    """Holds `folder` for this process until `release` (what: "run" or "report", for messages)."""

    def __init__(self, folder: str | Path, what: str):
        path = Path(folder) / LOCK_NAME
        self.file = open(path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "unknown"
            self.file.close()
            raise FolderBusyError(
                f"{folder} is in use by another jaxae {what} (PID {holder}): wait for it to finish, or choose another folder"
            ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"{os.getpid()}\n")
        self.file.flush()

    def release(self) -> None:
        if not self.file.closed:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
