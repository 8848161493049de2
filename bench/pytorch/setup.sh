#!/usr/bin/env bash
# Python environment for the PyTorch reference scripts (bench/pytorch/). Idempotent.
#   bash bench/pytorch/setup.sh                      venv at target/pytorch/venv with the pinned packages
#   bash bench/pytorch/setup.sh --fomm-git-dir DIR   also check out the original first-order-model code at the
#                                                    pinned commit from a local git dir/clone DIR into
#                                                    target/pytorch/first-order-model (use it as FOMM_REPO)
# torch is the PyPI Linux wheel (CUDA build; it pulls the nvidia-* / cuda-* wheels from PyPI, ~5.6 GB in the
# venv). It runs on the CPU without a GPU.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/target/pytorch/venv"
PY="${PYTHON:-python3}"
FOMM_COMMIT=c0274845cb2dd8f0f2fe6da580d97b60fef90c91
PINS=(torch==2.15.0 numpy==2.4.6 scipy==1.17.1 PyYAML==6.0.4 safetensors==0.8.0 pillow==13.0.0)

FOMM_GIT_DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --fomm-git-dir) FOMM_GIT_DIR="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi

# install only when a pin is not satisfied
if ! "$VENV/bin/python" - "${PINS[@]}" <<'EOF'
import sys
from importlib.metadata import version, PackageNotFoundError
bad = []
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have is None or have.split("+")[0] != want:
        bad.append(pin)
sys.exit(1 if bad else 0)
EOF
then
  "$VENV/bin/pip" install --disable-pip-version-check "${PINS[@]}"
fi

"$VENV/bin/python" -c "import torch, numpy, scipy, yaml, safetensors, PIL; \
print('torch', torch.__version__, '| numpy', numpy.__version__, '| scipy', scipy.__version__, \
'| pyyaml', yaml.__version__, '| safetensors', safetensors.__version__, '| pillow', PIL.__version__, \
'| cpu', torch.backends.cpu.get_cpu_capability())"

if [ -n "$FOMM_GIT_DIR" ]; then
  DEST="$ROOT/target/pytorch/first-order-model"
  if [ ! -d "$DEST/.git" ]; then
    git clone --quiet --no-checkout "$FOMM_GIT_DIR" "$DEST"
    # the repository's sup-mat/*.gif may be absent from a partial mirror; they are not needed
    git -C "$DEST" sparse-checkout set --no-cone '/*' '!/sup-mat/*.gif' 2>/dev/null || true
  fi
  if git -C "$DEST" cat-file -e "$FOMM_COMMIT^{commit}" 2>/dev/null; then
    git -C "$DEST" checkout --quiet "$FOMM_COMMIT" 2> >(grep -v 'invalid object' >&2)
  else
    echo "commit $FOMM_COMMIT not in $FOMM_GIT_DIR; using its HEAD" >&2
    git -C "$DEST" checkout --quiet HEAD
  fi
  echo "FOMM_REPO=$DEST ($(git -C "$DEST" rev-parse --short HEAD))"
elif [ -z "${FOMM_REPO:-}" ]; then
  echo "note: set FOMM_REPO to a checkout of the original first-order-model code (see bench/pytorch/README.md)"
fi
