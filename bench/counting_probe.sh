#!/usr/bin/env bash
# The count probe's measurement (issue 11): does it rank a real pretrained encoder above a random-init
# one of the same architecture and above a colour histogram, with intervals that do not overlap?
#
#   bench/counting_probe.sh [OUT_DIR]       (default /tmp/counting-probe; about 3-5 minutes on 2 CPU cores, cold cache)
#
# Three models -- torchvision:mobilenet_v2 (ImageNet weights, bundled), torchvision:mobilenet_v2/random
# (the same network, random init, run seed 0) and colorhist:rgb-8 (the example plugin's joint RGB
# histogram, 512-d, loaded from examples/harness-colorhist without installing it) -- on the three scenes
# probe specs: counting_scenes_total_probe (objects in all, 1-12), counting_scenes_stars_probe (stars
# among circles, 0-12, ridge) and counting_scenes_stars_probe_logistic (the same as a classification).
# 600 train and 400 test scenes of 96 px; each model embeds 1,000 images once (the specs share them).
# Prints one line per (task, model): every metric with its 95% interval. Figures: bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-/tmp/counting-probe}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export HARNESS_CACHE_DIR=${HARNESS_CACHE_DIR:-/tmp/counting-probe-cache}
# The colour histogram from the example package, without installing it.
export PYTHONPATH="examples/harness-colorhist${PYTHONPATH:+:$PYTHONPATH}"

rm -rf "$OUT"
time "$PY" -m harness -p harness_colorhist run --quiet --output-dir "$OUT" \
  --model torchvision:mobilenet_v2 --model torchvision:mobilenet_v2/random --model colorhist:rgb-8 \
  --task counting_scenes_total_probe --task counting_scenes_stars_probe --task counting_scenes_stars_probe_logistic

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

rows = []
for path in sorted(Path(sys.argv[1]).rglob("*.json")):
    doc = json.loads(path.read_text())
    cells = [f"{name[6:]} {m['value']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]"
             for name, m in doc["metrics"].items()]
    rows.append((doc["task"]["name"], doc["model"]["name"], "  ".join(cells)))
for task, model, cells in sorted(rows):
    print(f"{task:38s} {model:32s} {cells}")
EOF
