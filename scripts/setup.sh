#!/usr/bin/env bash
# Creates .venv at the repository root with everything css needs (see README).
# Idempotent: a stamp records what was installed; a re-run with nothing changed takes a second.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
STAMP="$VENV/.css-setup-stamp"
say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'die "a step failed (line $LINENO); read the output above, fix it, then re-run scripts/setup.sh"' ERR

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null \
  || die "Python >= 3.11 is required ($PY is $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11"

want=$(cat scripts/setup.sh pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  say "environment is up to date ($VENV)"
  exit 0
fi

# open3d needs libusb at import time.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  say "installing Debian's libusb-1.0-0 (needed by open3d)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq || die "apt-get update failed; install libusb-1.0-0 by hand"
  $SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null || die "could not install libusb-1.0-0"
fi

# The HTML report's browser test opens the report in a real headless browser (docs/report.md#tests).
if ! command -v chromium >/dev/null 2>&1; then
  say "installing Debian's chromium (the HTML report's browser test)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq || die "apt-get update failed; install chromium by hand"
  $SUDO apt-get install -y -qq chromium >/dev/null || die "could not install chromium"
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip setuptools wheel setuptools_scm ninja

say "installing torch 2.14.1 and torchvision 0.29.1"
"${PIP[@]}" install -q torch==2.14.1 torchvision==0.29.1

say "installing numpy, h5py, pyyaml, tqdm, tensorboard, matplotlib, plotly, open3d, laspy, lazrs, pytest"
"${PIP[@]}" install -q numpy h5py pyyaml tqdm tensorboard matplotlib plotly pillow open3d==0.20.0 laspy lazrs pytest pytest-timeout

# spconv's CPU wheel (it does not link torch); a CUDA machine takes spconv-cu120 instead
# (docs/pointcloud-scenes.md#the-sparse-convolution-library)
say "installing spconv 2.3.8 (the sparse-voxel UNet of whole scenes)"
"${PIP[@]}" install -q spconv==2.3.8

# The torch wheel is a CUDA build, so inplace-abn compiles its CUDA kernels too. torch's own guess
# of CUDA_HOME (parent of nvcc's bin/) is wrong on machines where nvcc is a wrapper; use the folder
# whose lib/ holds libcudart.
if [ -z "${CUDA_HOME:-}" ]; then
  for d in /usr/local/cuda /usr/local/cuda-*; do
    if ls "$d"/lib/libcudart.so* "$d"/lib64/libcudart.so* >/dev/null 2>&1; then CUDA_HOME=$d; break; fi
  done
fi
export CUDA_HOME=${CUDA_HOME:-}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-"8.0;9.0"}
export SETUPTOOLS_SCM_PRETEND_VERSION=1.1.0
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
if ! "$VENV/bin/python" -c 'import inplace_abn' >/dev/null 2>&1; then
  say "building inplace-abn 1.1.0 from source (about a minute; CUDA_HOME=${CUDA_HOME:-unset})"
  "${PIP[@]}" install -q --no-build-isolation inplace-abn==1.1.0
fi
if ! "$VENV/bin/python" -c 'import torch_scatter' >/dev/null 2>&1; then
  say "building torch-scatter 2.1.2 from source (about 5 minutes on 2 cores; pip caches the wheel)"
  "${PIP[@]}" install -q --no-build-isolation torch-scatter==2.1.2
fi

say "installing css in editable mode"
"${PIP[@]}" install -q --no-build-isolation --no-deps -e ".[test]"

say "checking imports"
"$VENV/bin/python" - <<'PY'
import torch, torchvision, numpy, h5py, yaml, tqdm, matplotlib, plotly, open3d, laspy, lazrs, inplace_abn, torch_scatter, spconv, css
print(f"[setup] torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"inplace_abn ok, torch_scatter {torch_scatter.__version__}, open3d {open3d.__version__}")
PY
echo "$want" > "$STAMP"
say "done: activate with 'source .venv/bin/activate'"
