"""vidtune: long, temporally consistent, pose-guided video generation with diffusion models.

The Python API is `VidtunePipeline` (`vidtune.api`) and its config `RunConfig` (`vidtune.config`);
both are imported on first use, so `import vidtune` and the command line stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["RunConfig", "VidtuneOutput", "VidtunePipeline", "VidtuneError", "__version__"]

_LAZY = {
    "VidtunePipeline": "vidtune.api",
    "VidtuneOutput": "vidtune.api",
    "RunConfig": "vidtune.config",
    "VidtuneError": "vidtune.errors",
}

if TYPE_CHECKING:
    from vidtune.api import VidtuneOutput, VidtunePipeline
    from vidtune.config import RunConfig
    from vidtune.errors import VidtuneError


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vidtune' has no attribute {name!r}")
