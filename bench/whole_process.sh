#!/usr/bin/env bash
# Every whole-process speed figure of bench/RESULTS.md in one run, with the arguments recorded there:
#  1. warm / cold `harness run` on the default job's shapes probe (issue 14: <= 0.10);
#  2. CLIP_benchmark from scratch vs harness cold and warm, zero-shot, fp32 and bf16
#     (issue 13: cold <= 0.5; issue 14: warm <= 0.25);
#  3. the allocator settings: pure forward, naive loop and `harness run --no-cache` on the same
#     model and images (issue 14: fastest loop >= 2x untuned, harness within 1.10x of it).
# About 20 minutes on the 2-core development VM. Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export HARNESS_CACHE_DIR="${HARNESS_CACHE_DIR:-/tmp/harness-whole-process-bench}"
echo "== bench/warm_cold.py --pairs 3"
.venv/bin/python bench/warm_cold.py --pairs 3
for precision in fp32 bf16; do
  echo "== bench/versus_clip_benchmark.py --n 300 --pairs 3 --precision $precision"
  .venv/bin/python bench/versus_clip_benchmark.py --n 300 --pairs 3 --precision "$precision"
done
echo "== bench/allocator.py --pairs 2"
.venv/bin/python bench/allocator.py --pairs 2
