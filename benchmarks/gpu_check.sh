#!/usr/bin/env bash
# One call on a lent GPU machine checks correctness and speed together (under 8 minutes on one H100):
# the tests marked `gpu`, then learner and end-to-end throughput of s3ta, s3ta-small and lstm on Breakout
# in fp32 and bf16. Results land in $OUT (the device tool's folder) or benchmarks/results/gpu/.
#
# The GPU machine has Python and PyTorch but no gymnasium or ale-py, and no network: bring their wheels
# in .whl/ (git-ignored through .git/info/exclude) and carry it with the call:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl gymnasium ale-py farama-notifications
#   device run: bash benchmarks/gpu_check.sh   (carry: [".whl"])
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results/gpu}"
mkdir -p "$out"
python=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
if [ -d .whl ]; then $python -m pip install -q --no-deps --no-index .whl/*.whl; fi
$python -m pip install -q --no-deps --no-build-isolation -e . || exit 1
$python -c "import torch, s3ta; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$out/gpu.txt"
timeout 150 $python -m pytest -q -m gpu tests -p no:cacheprovider 2>&1 | tail -25 | tee "$out/gpu_tests.log"
tests=${PIPESTATUS[0]}
timeout 300 $python benchmarks/gpu_throughput.py --agents s3ta s3ta-small lstm --env breakout \
    --precisions fp32 bf16 --seconds 4 --e2e-seconds 12 --json "$out/gpu_throughput.json" 2>&1 | tail -12
echo "gpu tests exit code: $tests"
