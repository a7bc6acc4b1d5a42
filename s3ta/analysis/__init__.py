"""Interpretability analyses of trained agents (`s3ta explain`, GitHub issue 4).

Owns the recording format every renderer and analysis reads (``recording``), a re-implementation
of the attention agent's step that accepts attention overrides (``forward``), the exact map from
attention cells to frame pixels (``geometry``), emulator-RAM ground truth for Atari
(``atari_objects``, checked against the screen by ``atari_validation``), the analyses of spec
section 6: what/where, saliency, interventions, sprite injection and grounding, and the
measurements of spec section 7 (issue 14): insertion/deletion (``faithfulness``), model
randomisation (``sanity``), live interventions (``closed_loop``) and their table (``audit``).
Pictures are drawn by ``s3ta.viz``.
"""

from s3ta.analysis.forward import forward_step, replay, unroll
from s3ta.analysis.recording import Recording, load_recording, record

__all__ = ["Recording", "forward_step", "load_recording", "record", "replay", "unroll"]
