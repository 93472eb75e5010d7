#!/usr/bin/env bash
# Prepare here what a lent GPU needs (device tool): wheels it lacks and a training-data
# subset, in the ignored folder .gpu/ (carry it: the device call's carry=[".gpu"]).
# Usage: bash scripts/gpu-prepare.sh [IMAGES]   (default 280 images: the tree that travels
# is limited to 64 MiB, training state and shipped weights included)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-280}
mkdir -p .gpu/whl .gpu/data
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_34_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpu/whl compressai==1.2.8 "constriction~=0.5.0" pytorch-msssim==1.0.0
# every k-th training image, so the subset spans all the sources
total=$(ls ../shared/data/train/*.png | wc -l)
ls ../shared/data/train/*.png | awk -v k=$(( (total + count - 1) / count )) 'NR % k == 0' \
    | head -n "$count" | xargs -I{} cp {} .gpu/data/
du -sh .gpu
tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
carried=$(du -sb .gpu | cut -f1)
echo "travels: $(( (tracked + carried) >> 20 )) MiB of the device tool's 64 MiB"
