#!/usr/bin/env bash
# The GPU measurements owed by issues 3 and 4, in one command, on one CUDA machine (no network).
#
#   bench/gpu.sh [STEP ...]        (no STEP: all of them, in this order; about 20-25 minutes on one H100)
#
#   vitb16          issue 3: open_clip ViT-B/16, random weights, bf16, 20k JPEGs, --batch-size auto:
#                   harness end to end vs the pure-forward ceiling (target >= 0.7), warm/cold cache
#   vitl14          issue 3: the same for ViT-L/14
#   workers         ViT-B/16 again with 15 decoding workers instead of auto (8): is the gap decoding?
#   dinov2          issue 4: DINOv2 ViT-L/14 (transformers, random weights) image extraction, same data
#   llm             issue 4: Llama-3-8B architecture (random weights, bf16) caption extraction, texts/s, tokens/s
#   sharelock       issue 4: ShareLock training at paper scale: 50 timed steps x 3, projection, then the
#                   full 5000-step schedule measured when projected under $BUDGET s (default 540)
#   sharelock-bf16  the same with precision bf16-mixed (bf16 autocast; float32 weights and Adam)
#   generation      issue 10: a LLaVA-1.5-7B-shaped VLM (random weights, bf16 autocast) answering 256
#                   questions about images: harness generation engine vs a direct model.generate loop,
#                   questions/s and tokens/s, the ratio (goal <= 1.10)
#
# Each step is bounded by `timeout` (590 s), so any one fits a 10-minute command. Output goes to
# the terminal and to $OUT/gpu-bench.log ($OUT unset: /tmp/gpu-bench.log). Models and JPEGs are
# written under $HARNESS_CACHE_DIR (default /tmp/harness-gpu-bench), generated on first use.
#
# Python: $PYTHON, default .venv/bin/python. scripts/install.sh pins torch to the CPU wheel
# (constraints-cpu.txt), so on a GPU machine point PYTHON at an interpreter whose torch has CUDA
# and that has harness installed (bench/RESULTS.md, "GPU (owed)"); without CUDA this exits 1.
# TINY=1 bench/gpu.sh runs the same steps on a CPU with tiny models and data (a check of the plumbing).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
LOG=${OUT:-/tmp}/gpu-bench.log
BUDGET=${BUDGET:-540}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export HARNESS_CACHE_DIR=${HARNESS_CACHE_DIR:-/tmp/harness-gpu-bench}

if [ -n "${TINY:-}" ]; then  # a check of this script on a CPU: the same steps with tiny models and data
  DEVICE=cpu VIT_B=ViT-S-16 VIT_L=ViT-S-32 DINOV2=ViT-S-14 TEXT=(--tiny --texts 64 --batch-size 16) SHARELOCK=(--tiny)
  GENERATION=(--size tiny --requests 16 --batch-size 4 --repeats 1)
  IMAGES=(--device cpu --dtype bf16 --jpegs 48 --batch-size auto --repeats 1)
elif "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  DEVICE=cuda VIT_B=ViT-B-16 VIT_L=ViT-L-14 DINOV2=ViT-L-14 TEXT=(--texts 8192 --batch-size 256) SHARELOCK=()
  GENERATION=(--size llava7b --requests 256 --batch-size 16 --dtype bf16 --repeats 2)
  IMAGES=(--device cuda --dtype bf16 --jpegs 20000 --batch-size auto --repeats 3)
else
  version=$("$PY" -c 'import torch; print("torch", torch.__version__)' 2>&1 | tail -1)
  echo "bench/gpu.sh: $PY has no CUDA torch ($version; scripts/install.sh installs the CPU wheel): set PYTHON to a Python with CUDA torch" >&2
  exit 1
fi

RUN=(timeout -k 10 590 "$PY")
step() {
  case "$1" in
    vitb16) "${RUN[@]}" bench/extraction.py --model "random:openclip:$VIT_B" "${IMAGES[@]}" --skip naive ;;
    vitl14) "${RUN[@]}" bench/extraction.py --model "random:openclip:$VIT_L" "${IMAGES[@]}" --skip naive ;;
    workers) "${RUN[@]}" bench/extraction.py --model "random:openclip:$VIT_B" "${IMAGES[@]}" --num-workers 15 \
               --skip naive,nocache,warm ;;
    dinov2) "${RUN[@]}" bench/extraction.py --model "random:dinov2:$DINOV2" "${IMAGES[@]}" --skip naive,nocache ;;
    llm) "${RUN[@]}" bench/text_extraction.py --device "$DEVICE" --dtype bf16 --repeats 3 "${TEXT[@]}" ;;
    sharelock) "${RUN[@]}" bench/sharelock_train.py --device "$DEVICE" --repeats 3 --full --budget "$BUDGET" "${SHARELOCK[@]}" ;;
    sharelock-bf16) "${RUN[@]}" bench/sharelock_train.py --device "$DEVICE" --repeats 3 --precision bf16-mixed --full \
                      --budget "$BUDGET" "${SHARELOCK[@]}" ;;
    generation) "${RUN[@]}" bench/generation.py --device "$DEVICE" "${GENERATION[@]}" ;;
    *) echo "bench/gpu.sh: unknown step '$1' (vitb16 vitl14 workers dinov2 llm sharelock sharelock-bf16 generation)"; return 2 ;;
  esac
}

STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=(vitb16 vitl14 workers dinov2 llm sharelock sharelock-bf16 generation)
{
  echo "== bench/gpu.sh ${STEPS[*]}: $(date -u +%FT%TZ), git $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cpus," \
       "$("$PY" -c 'import torch; print("torch", torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())')"
  failed=()
  for name in "${STEPS[@]}"; do
    echo "== $name"
    start=$SECONDS
    step "$name" 2>&1 | grep --line-buffered -v -E '(Resolving data files|Downloading data|Generating train split|Loading weights|Writing model shards)'
    rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc, $((SECONDS - start)) s"
    [ "$rc" -eq 0 ] || failed+=("$name")
  done
  echo "== done: ${#STEPS[@]} step(s), failed: ${failed[*]:-none}"
  [ ${#failed[@]} -eq 0 ]
} 2>&1 | tee "$LOG"
