"""The allocator tuning that train() applies: freed memory is reused, not page-faulted back."""

import subprocess
import sys

import pytest

PROBE = """
import resource, sys
import torch
from s3ta.runtime import tune_allocator
applied = tune_allocator() if sys.argv[1] == "tuned" else False
def update():  # an update-like pattern: a 40 MiB activation (over glibc's largest mmap threshold) and a few 4 MiB ones
    blocks = [torch.ones(10 << 20)] + [torch.ones(1 << 20) for _ in range(8)]
    return sum(float(b[-1]) for b in blocks)
for _ in range(3):
    update()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    update()
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def faults_per_update(mode: str) -> tuple[bool, float]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True).stdout
    applied, faults = out.split()
    return applied == "True", float(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator tuning is Linux-only")
def test_tuned_allocator_reuses_freed_memory():
    applied, tuned = faults_per_update("tuned")
    _, default = faults_per_update("default")
    assert applied
    pages = (40 << 20) // 4096
    assert default > pages / 2, f"glibc default should page-fault the 40 MiB block each time, got {default}"
    assert tuned < pages / 4, f"the tuned allocator page-faulted {tuned} times per update"


def test_opt_out_leaves_the_allocator_alone(monkeypatch):
    from s3ta import runtime

    monkeypatch.setattr(runtime, "_tuned", False)
    monkeypatch.setenv(runtime.OPT_OUT, "0")
    assert runtime.tune_allocator() is False
