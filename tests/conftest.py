"""Test-wide settings: OpenMP threads that sleep rather than spin while waiting (as the CLI sets),
so tests that run actor processes beside the learner do not slow each other down ~50x."""

from s3ta.runtime import wait_passively

wait_passively()
