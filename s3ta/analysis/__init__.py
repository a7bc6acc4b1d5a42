"""Interpretability analyses of trained agents (`s3ta explain`, GitHub issue 4).

Owns the recording format every renderer and analysis reads (``recording``), a re-implementation
of the attention agent's step that accepts attention overrides (``forward``), the exact map from
attention cells to frame pixels (``geometry``), emulator-RAM ground truth for Atari
(``atari_objects``, checked against the screen by ``atari_validation``), the analyses of spec
section 6: what/where, saliency, interventions, sprite injection and grounding, and the
measurements of spec section 7 (issue 14): insertion/deletion (``faithfulness``), model
randomisation (``sanity``), live interventions (``closed_loop``) and their table (``audit``).
Pictures are drawn by ``s3ta.viz``. The names below load their module (and torch) on first use, so
that `s3ta explain --help` is built without torch.
"""

import importlib
from typing import Any

_MODULE_OF = {"forward_step": "forward", "replay": "forward", "unroll": "forward",
              "Recording": "recording", "load_recording": "recording", "record": "recording"}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
