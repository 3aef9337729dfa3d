"""One run per run folder: an exclusive lock file holding the owner's pid and host.

Two runs writing one folder would mix their stages (stages 1-2 of one config, 3-4 of another,
a final.mp4 matching neither), so a second run must stop at once. The lock is `fcntl.flock` on
`<run>/vidtune.lock`: the kernel drops it when its process dies (even by SIGKILL), so a lock file
left by a dead run is simply taken over; the pid and host written into the file are what the
second run reports. The file is removed on release.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from vidtune.errors import VidtuneError

LOCK_NAME = "vidtune.lock"


def _owner(path: Path) -> dict:
    """The pid/host recorded in a lock file ({} when unreadable or still being written)."""
    for _ in range(5):
        try:
            data = json.loads(path.read_text() or "null")
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict):
            return data
        time.sleep(0.02)
    return {}


class RunLock:
    """Exclusive lock of a run folder; a context manager. `took_over` names a dead owner, if any."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self.fd: int | None = None
        self.took_over: dict = {}

    def acquire(self) -> RunLock:
        """Take the lock or raise a one-line VidtuneError naming the folder and the other process."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._busy() from None
            if self._same_file(fd):
                break
            os.close(fd)  # the holder removed the file between our open and flock: lock the new one
        previous = _owner(self.path) if os.fstat(fd).st_size else {}
        if previous.get("pid") not in (None, os.getpid()):
            self.took_over = previous
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self.fd = fd
        return self

    def _same_file(self, fd: int) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        return os.fstat(fd).st_ino == st.st_ino and os.fstat(fd).st_dev == st.st_dev

    def _busy(self) -> VidtuneError:
        owner = _owner(self.path)
        who = f"process {owner.get('pid', '?')}" + (f" on {owner['host']}" if owner.get("host") else "")
        since = f" since {owner['started']}" if owner.get("started") else ""
        return VidtuneError(
            f"{self.root}: in use by vidtune {who}{since}; wait for it to finish (or stop it), or pass another --out"
        )

    def release(self) -> None:
        """Remove the lock file and drop the lock."""
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
