"""Test-wide settings: OpenMP threads that sleep rather than spin while waiting (as the CLI sets),
so tests that run actor processes beside the learner do not slow each other down ~50x."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
