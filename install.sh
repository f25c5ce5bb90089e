#!/usr/bin/env bash
# Creates .venv beside this file and installs simsurrogates into it (editable, with test tools).
# torch is installed first, pinned, only where none is present: an unpinned torch pulls a
# multi-GB CUDA build on machines that need only the CPU one. Set TORCH_SPEC to choose another.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}"
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
