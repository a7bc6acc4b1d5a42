"""The attention maths of S3TA (paper section 2) as pure functions: the fixed Fourier spatial
basis, query-key-value spatial attention split into its content and spatial parts, and the
L2-norm-of-keys ablation. Shape letters as in ``s3ta.agents.core``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor


def spatial_basis(h: int, w: int, num_frequencies: int = 4) -> Tensor:
    """The fixed Fourier basis S: [(2F)^2, h, w] (64 channels for F = 4).

    Row functions, in channel order: cos(pi u i / h) for u = 1..F, then sin(pi u i / h) for
    u = 1..F, with i in [0, h); the same over columns j in [0, w). Channel r * 2F + c is the outer
    product of row function r and column function c, so S[r * 2F + c, i, j] = f_r(i) g_c(j).
    """
    if h < 1 or w < 1 or num_frequencies < 1:
        raise ValueError(f"spatial_basis needs h, w, num_frequencies >= 1, got {h}, {w}, {num_frequencies}")
    u = torch.arange(1, num_frequencies + 1, dtype=torch.float64)

    def functions(n: int) -> Tensor:  # [2F, n]
        angle = math.pi * u[:, None] * torch.arange(n, dtype=torch.float64)[None, :] / n
        return torch.cat([torch.cos(angle), torch.sin(angle)], dim=0)

    rows, cols = functions(h), functions(w)  # [2F, h], [2F, w]
    basis = rows[:, None, :, None] * cols[None, :, None, :]  # [2F, 2F, h, w]
    return basis.reshape(-1, h, w).float()


class Attention(NamedTuple):
    answers: Tensor  # [B, N, V + S]
    weights: Tensor  # [B, N, h, w], softmax over h*w
    content_logits: Tensor  # [B, N, h, w]
    spatial_logits: Tensor  # [B, N, h, w]


def read_out(weights: Tensor, values: Tensor, basis: Tensor) -> Tensor:
    """Answers [B, N, V + S]: attention weights [B, N, h, w] applied to [V; S] (paper equation 6)."""
    flat = weights.flatten(2)  # [B, N, h*w]
    answer_values = torch.einsum("bnp,bvp->bnv", flat, values.flatten(2))  # [B, N, V]
    answer_basis = torch.einsum("bnp,sp->bns", flat, basis.flatten(1))  # [B, N, S]
    return torch.cat([answer_values, answer_basis], dim=-1)


def _attend(content_logits: Tensor, spatial_logits: Tensor, values: Tensor, basis: Tensor) -> Attention:
    batch, heads, h, w = content_logits.shape
    logits = (content_logits + spatial_logits).reshape(batch, heads, h * w)
    weights = torch.softmax(logits, dim=-1).reshape(batch, heads, h, w)
    return Attention(read_out(weights, values, basis), weights, content_logits, spatial_logits)


def override_attention(attention: Attention, weights: Tensor, values: Tensor, basis: Tensor) -> Attention:
    """The same attention step with its weights replaced (an intervention): answers are re-read."""
    if weights.shape != attention.weights.shape:
        raise ValueError(f"replacement attention must be {tuple(attention.weights.shape)}, got {tuple(weights.shape)}")
    return attention._replace(answers=read_out(weights, values, basis), weights=weights)


def query_attention(queries: Tensor, keys: Tensor, values: Tensor, basis: Tensor) -> Attention:
    """Spatial softmax attention of N queries over an h x w map (paper equations 4-6).

    queries [B, N, K + S], keys [B, K, h, w], values [B, V, h, w], basis [S, h, w].
    The logits are q . [K; S] with no scaling; they split into q_K . K (content, "what") and
    q_S . S (spatial, "where"). Answers are the attention-weighted [V; S].
    """
    key_channels, basis_channels = keys.shape[1], basis.shape[0]
    if queries.dim() != 3 or queries.shape[-1] != key_channels + basis_channels:
        raise ValueError(
            f"queries must be [B, N, K + S] = [B, N, {key_channels + basis_channels}], "
            f"got {tuple(queries.shape)}"
        )
    if keys.shape[-2:] != basis.shape[-2:] or values.shape[-2:] != basis.shape[-2:]:
        raise ValueError(f"keys {tuple(keys.shape)}, values {tuple(values.shape)} and basis "
                         f"{tuple(basis.shape)} must share the spatial size")
    query_keys, query_basis = queries.split([key_channels, basis_channels], dim=-1)
    content = torch.einsum("bnk,bkhw->bnhw", query_keys, keys)
    spatial = torch.einsum("bns,shw->bnhw", query_basis, basis)
    return _attend(content, spatial, values, basis)


def l2_key_attention(keys: Tensor, values: Tensor, basis: Tensor) -> Attention:
    """The "no queries" ablation (paper 4.1.1): head n's logit at each position is the L2 norm of
    its own key slice there. keys [B, N, K, h, w]; the spatial part of the logits is zero."""
    if keys.dim() != 5:
        raise ValueError(f"keys must be [B, N, K, h, w], got {tuple(keys.shape)}")
    content = keys.norm(dim=2)  # [B, N, h, w]
    return _attend(content, torch.zeros_like(content), values, basis)
