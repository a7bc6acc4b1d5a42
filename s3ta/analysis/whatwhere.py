"""What versus where (spec 6.5, paper's Enduro figure): does a head find its target by content
("what": the q_K . K part of its logits) or by position ("where": the q_S . S part)?

Per head and position, d = content logit - spatial logit, clipped to [-log 10, log 10] and weighted
by the head's attention A. Within each frame the minimum maps to bright blue ("where"), the maximum
to bright red ("what"), zero to white. The per-head score sum_ij A_ij d_ij (an attention-weighted
mean of the clipped difference, in nats) summarises a head over time: > 0 "what", < 0 "where".
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

CLIP = math.log(10.0)


class WhatWhere(NamedTuple):
    weighted: np.ndarray  # [..., N, h, w]: A * clip(content - spatial)
    score: np.ndarray  # [..., N]: sum over positions of ``weighted``


def what_where(attention: np.ndarray, content_logits: np.ndarray, spatial_logits: np.ndarray,
               clip: float = CLIP) -> WhatWhere:
    """The paper's recipe on maps [..., N, h, w] (all three the same shape)."""
    attention, content, spatial = (np.asarray(x, np.float32) for x in (attention, content_logits, spatial_logits))
    if not attention.shape == content.shape == spatial.shape or attention.ndim < 2:
        raise ValueError(f"attention {attention.shape}, content {content.shape} and spatial {spatial.shape} "
                         "logits must share one shape [..., h, w]")
    if clip <= 0:
        raise ValueError(f"clip must be > 0, got {clip}")
    weighted = attention * np.clip(content - spatial, -clip, clip)
    return WhatWhere(weighted, weighted.sum(axis=(-1, -2)))


def balance(weighted: np.ndarray) -> np.ndarray:
    """Scale each map [..., h, w] to [-1, 1]: negatives by the map's |minimum|, positives by its
    maximum, so the minimum is -1 (bright blue), the maximum +1 (bright red) and 0 stays 0 (white)."""
    weighted = np.asarray(weighted, np.float32)
    low = -weighted.min(axis=(-1, -2), keepdims=True)
    high = weighted.max(axis=(-1, -2), keepdims=True)
    negative = np.where(low > 0, weighted / np.where(low > 0, low, 1.0), 0.0)
    positive = np.where(high > 0, weighted / np.where(high > 0, high, 1.0), 0.0)
    return np.where(weighted < 0, negative, positive).astype(np.float32)


def colours(balanced: np.ndarray) -> np.ndarray:
    """RGB float [..., 3] in [0, 1] of balanced values: -1 blue, 0 white, +1 red."""
    b = np.clip(np.asarray(balanced, np.float32), -1, 1)[..., None]
    white, red, blue = np.ones(3, np.float32), np.array([1, 0, 0], np.float32), np.array([0, 0, 1], np.float32)
    return np.where(b >= 0, white + b * (red - white), white - b * (blue - white))
