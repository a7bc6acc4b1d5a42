"""Optional dependencies: import Ray only where a Ray backend is chosen, with one message that
says how to install it."""

from __future__ import annotations

import importlib
from types import ModuleType


def import_ray() -> ModuleType:
    """The ``ray`` module, or a ModuleNotFoundError that names the extra to install."""
    try:
        return importlib.import_module("ray")
    except ModuleNotFoundError:
        raise ModuleNotFoundError("the ray backend needs Ray, which is not installed: pip install 's3ta[ray]'",
                                  name="ray") from None
