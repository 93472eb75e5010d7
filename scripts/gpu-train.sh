#!/usr/bin/env bash
# Train the channel-conditional model on a lent GPU in one command, from the committed training
# state, and bring the new state back through $OUT (split in pieces under the 16 MiB per-file limit).
#   device run, carry [".gpu"]:  bash scripts/gpu-train.sh            (joint training)
#                                bash scripts/gpu-train.sh --entropy-only
# Environment: MINUTES (default 8), DEVICE (cuda), BATCH (16), ARCH (channel), INIT (the committed
# state of ARCH), PYTHON (python3), SKIP_INSTALL=1 to use an environment that already has slimcodec.
# Extra arguments go to python -m slimcodec.tools.train. Back here:
#   cat state.pt.part-* > ~/ckpt/gpu-state.pt, then train with --init ~/ckpt/gpu-state.pt
#   (and without the older CPU checkpoint, which would take precedence).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder to bring back}"
PYTHON=${PYTHON:-python3}
if [ -z "${SKIP_INSTALL:-}" ]; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
        --target /tmp/site .gpu/whl/*.whl .
    export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
ARCH=${ARCH:-channel}
"$PYTHON" -m slimcodec.tools.train --arch "$ARCH" --device "${DEVICE:-cuda}" --no-bf16 \
    --data "${DATA:-.gpu/data}" --val "" --init "${INIT:-training/$ARCH-state.pt}" \
    --checkpoint "${CHECKPOINT:-/tmp/gpu-checkpoint.pt}" --batch-size "${BATCH:-16}" \
    --time-limit-min "${MINUTES:-8}" --save-state "$OUT/state.pt" "$@" 2>&1 | tee "$OUT/train.log"
split -b 15m -d "$OUT/state.pt" "$OUT/state.pt.part-"
rm "$OUT/state.pt"
ls -la "$OUT"
