"""s3ta: attention-augmented agents for interpretable reinforcement learning (Mott et al. 2019).

Subpackages: ``agents`` (models), ``envs`` (batched environments), ``training`` (IMPALA),
``analysis`` and ``viz`` (interpretability), ``evaluation`` (scores and reports).
"""

__version__ = "0.1.0"
