#!/usr/bin/env bash
# Every GPU figure of this project from one prepared command, into one JSON
# (benchmarks/device_check.py says what each part measures).
#
# On the accelerator machine (the repository root as the working directory,
# the MNIST IDX files carried at shared/data/mnist, the project not installed):
#
#   bash benchmarks/device_check.sh --idx_dir=shared/data/mnist \
#       --out=$OUT/device_check.json
#
# Here, on CPU, a few steps of each part (CI):
#
#   bash benchmarks/device_check.sh --dry_run --idx_dir=../shared/data/mnist \
#       --out=runs/device_check_dry.json
#
# Exit status 0 when every part succeeded or was skipped for a stated reason.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
python="${PYTHON:-$(command -v python3 || command -v python)}"
exec "$python" "$repo/benchmarks/device_check.py" "$@"
