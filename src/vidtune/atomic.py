"""Atomic file writes: write to a temporary name beside the target, then rename over it.

A killed run therefore never leaves a half-written file that looks whole; the temporaries it
leaves (``.NAME.XXXXXXXX.tmp[.ext]``, ``.NAME.old``) are recognised by `is_temporary` so the
next run can remove them. Files and folders get the modes the umask gives (tempfile's own
are 0600 / 0700). A full disk or an unwritable folder surfaces as an OSError naming the target.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# tempfile's names: prefix ".NAME.", 8 random characters, suffix ".tmp" (+ the target's extension)
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[^.]+)?$")
_OLD = re.compile(r"^\.(.+)\.old$")
LOW_SPACE_BYTES = 1 << 20  # a write that fails with less free space than this is taken as a full disk


def is_temporary(name: str) -> bool:
    """True for the names `atomic_path` / `atomic_dir` (and video.VideoWriter) write before renaming."""
    return bool(_TEMPORARY.match(name))


def old_target(name: str) -> str | None:
    """For ``.NAME.old`` (what `atomic_dir` moves the previous folder to while it swaps), NAME."""
    m = _OLD.match(name)
    return m.group(1) if m else None


def current_umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | Path, is_dir: bool = False) -> None:
    """Give ``path`` the mode a plain ``open`` / ``mkdir`` would have (0666 / 0777 less the umask)."""
    os.chmod(path, (0o777 if is_dir else 0o666) & ~current_umask())


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether a failed write failed for want of space (safetensors and torch.save wrap ENOSPC in their own errors)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    text = str(exc)
    if "No space left on device" in text or "os error 28" in text:
        return True
    free = _free_bytes(folder) if isinstance(exc, RuntimeError) else None
    return free is not None and free < LOW_SPACE_BYTES


def _named_error(exc: BaseException, target: Path) -> OSError | None:
    """An OSError naming ``target`` for a failed write that did not name its path (None: keep ``exc``)."""
    if _disk_full(exc, target.parent):
        return OSError(errno.ENOSPC, "No space left on device", str(target))
    if isinstance(exc, OSError) and exc.errno is not None and (exc.filename is None or ".tmp" in str(exc.filename)):
        return OSError(exc.errno, exc.strerror or str(exc), str(target))
    return None


@contextmanager
def _naming_errors(target: Path) -> Iterator[None]:
    """Re-raise write failures inside the block as OSErrors that name ``target``."""
    try:
        yield
    except Exception as exc:
        named = _named_error(exc, target)
        if named is None:
            raise
        raise named from exc


def _make_parent(target: Path) -> None:
    with _naming_errors(target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to ``path`` if the block succeeds."""
    target = Path(path)
    _make_parent(target)
    with _naming_errors(target):
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=target.parent)
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _naming_errors(target):
            apply_umask(tmp)
            yield tmp
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; replace ``path`` with it if the block succeeds."""
    target = Path(path)
    _make_parent(target)
    with _naming_errors(target):
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        with _naming_errors(target):
            apply_umask(tmp, is_dir=True)
            yield tmp
            _swap_in(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _swap_in(tmp: Path, target: Path) -> None:
    """Put the finished folder ``tmp`` at ``target`` (the previous one moves to ``.NAME.old``, then goes)."""
    if not target.exists():
        os.replace(tmp, target)
        return
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_safetensors(path: str | Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """Atomically save a dict of tensors as safetensors (contiguous CPU copies)."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
