"""The faults training can end in, torch-free so that `s3ta train` can name them while its parser is
built without loading torch. ``checkpoint`` and ``learner`` raise them and re-export them.
"""


class CheckpointError(ValueError):
    """A missing, unreadable or mismatched checkpoint; the message is one line naming the problem."""


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient norm became NaN or Inf."""
