"""s3ta: attention-augmented agents for interpretable reinforcement learning (Mott et al. 2019).

Subpackages: ``agents`` (models), ``envs`` (batched environments), ``training`` (IMPALA),
``analysis`` and ``viz`` (interpretability), ``evaluation`` (scores and reports), ``zoo`` (trained
agents). For scripts: ``s3ta.load(...)`` returns a ``Policy`` (``s3ta.policy``; docs/api.md).

Importing s3ta does not import torch (``load`` and ``Policy`` load it on first use). It does set
``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it, as the ``s3ta`` command does, so that
torch, imported after s3ta, does not spin its OpenMP threads on a busy CPU (``s3ta.runtime``).
"""

from typing import Any

from s3ta.runtime import wait_passively

__version__ = "0.1.0"
__all__ = ["Policy", "PolicyStep", "__version__", "load"]

wait_passively()  # the one import-time effect: it only works before torch loads


def __getattr__(name: str) -> Any:
    if name in ("Policy", "PolicyStep", "load"):
        from s3ta import policy

        return getattr(policy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
