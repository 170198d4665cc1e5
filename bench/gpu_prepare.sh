#!/usr/bin/env bash
# Prepares what bench/gpu_check.sh needs beside the working tree, here, before a GPU machine is started: .whl/ (the
# pure-Python wheels the device image lacks, at the versions this venv has, for its Python 3.12) and .gpudata/
# (Fashion-MNIST's IDX files from Debian's dataset-fashion-mnist), both ignored through .git/info/exclude. Then:
#
#   device run (carry: .whl, .gpudata; timeout 540):
#       OUT=$OUT bash bench/gpu_check.sh
#
# and read $OUT/gpu_check.txt and $OUT/end_to_end.json. Rehearse on the CPU first (no device time):
#   DEV=cpu SPEED=0 E2E_ARGS="--max-examples 20" PYTHON=.venv/bin/python OUT=/tmp/gpu_rehearsal bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
for d in /.whl/ /.gpudata/; do grep -qx "$d" "$exclude" 2>/dev/null || echo "$d" >> "$exclude"; done
pins=()
for name in pyro-ppl pyro-api arviz xarray-einstats h5netcdf mlxtend tomli-w; do
    version=$($PY -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
    [ -n "$version" ] || { echo "gpu_prepare: $name is not installed in $PY's environment; install ppvae's dev extra first" >&2; exit 1; }
    pins+=("$name==$version")
done
rm -rf .whl && $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "${pins[@]}"
src=/usr/share/datasets/fashion-mnist
ls "$src"/*-idx?-ubyte.gz >/dev/null 2>&1 \
    || { echo "gpu_prepare: no Fashion-MNIST in $src; apt-get install -y dataset-fashion-mnist" >&2; exit 1; }
mkdir -p .gpudata && cp "$src"/*-idx?-ubyte.gz .gpudata/
echo "ready: $(ls .whl | wc -l) wheels in .whl ($(du -sh .whl | cut -f1)), $(ls .gpudata | wc -l) files in .gpudata ($(du -sh .gpudata | cut -f1))"
