"""The `vidtune` command: run, plan, demo, evaluate, ablate, poses, models, train-demo.

User errors (VidtuneError) and the system's refusals (OSError: a read-only or full disk, a
path under a file) print one line naming the path or key and the fix and exit with status 2;
no traceback.

Under torchrun (`torchrun --nproc-per-node K --no-python vidtune run ...`) `vidtune run` joins the
process group (`vidtune.distributed.launch`); rank 0 alone prints. An error on any rank, whatever its
kind, prints its one line (with the rank) and every rank exits with status 2 (`distributed.fail`).
"""

from __future__ import annotations

import argparse
import errno
import sys

from vidtune.cli.commands import (
    DEFAULT_FPS,
    DEMO_MOTIONS,
    DEMO_PROMPT,
    DEMO_STEPS,
    build_config,
    read_prompt_file,
)
from vidtune.cli.parser import make_parser
from vidtune.errors import VidtuneError

__all__ = [
    "DEFAULT_FPS",
    "DEMO_MOTIONS",
    "DEMO_PROMPT",
    "DEMO_STEPS",
    "build_config",
    "main",
    "make_parser",
    "read_prompt_file",
]

# What to do about an OSError, by errno.
_OS_FIXES = {
    errno.ENOSPC: "free some space or write elsewhere (--out)",
    errno.EDQUOT: "free some space or write elsewhere (--out)",
    errno.EROFS: "the file system is read-only; write elsewhere (--out)",
    errno.EACCES: "no permission; write elsewhere or fix the permissions",
    errno.EPERM: "not permitted; write elsewhere or fix the permissions",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.ENOENT: "check that the path exists",
    errno.EISDIR: "the path is a folder; give a file path",
}


def os_error_line(exc: OSError, args: argparse.Namespace) -> str:
    """One line for an OSError: the path (or the output folder when the error names none), what, the fix."""
    where = exc.filename or getattr(args, "out", None) or getattr(args, "json", None)
    what = exc.strerror or str(exc)
    fix = _OS_FIXES.get(exc.errno or 0, "check the path and try again")
    return f"{where}: {what}; {fix}" if where else f"{what}; {fix}"


def _distributed() -> bool:
    """Whether this process runs in a torch.distributed group (without importing torch when it cannot)."""
    if "torch" not in sys.modules:
        return False
    from vidtune import distributed

    return distributed.current().enabled


def _error(message: str) -> int:
    """Print the one-line error (under torchrun: with the rank, after telling the other ranks) -> status 2."""
    if _distributed():
        from vidtune import distributed

        message = distributed.fail(message)
    print(f"vidtune: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VidtuneError as exc:
        return _error(str(exc))
    except OSError as exc:
        return _error(os_error_line(exc, args))
    except Exception as exc:
        if not _distributed():
            raise
        return _error(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
    except KeyboardInterrupt:
        print("vidtune: interrupted; finished stages are kept, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
