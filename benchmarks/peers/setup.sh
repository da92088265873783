#!/usr/bin/env bash
# Build the peers' own virtualenv (never touches the project's .venv).
#
#   benchmarks/peers/setup.sh [--torchvision] [VENV]     (default VENV: .venv-peers)
#
# torch==2.13.0 (CPU wheel from /opt/wheels, via pip's find-links) + numpy + scipy + pillow, and
# torchfcn 1.9.7 from PyPI with --no-deps: its declared deps pull in chainer's `fcn` package,
# which does not import under numpy 2; run_peers.py registers a stand-in `fcn` module instead.
# --torchvision: also install torchvision for fcn_resnet50. It needs torch 2.14.1, which on this
# machine is a 5.5 GB CUDA build, so it is opt-in and replaces the venv's torch 2.13.0.
set -euo pipefail

with_torchvision=0
venv=.venv-peers
for arg in "$@"; do
  case "$arg" in
    --torchvision) with_torchvision=1 ;;
    -h|--help) sed -n 2,10p "$0"; exit 0 ;;
    *) venv="$arg" ;;
  esac
done

python=${PYTHON:-python3}
"$python" -m venv "$venv"
echo '*' > "$venv/.gitignore"  # keep the venv out of git status without editing .gitignore
pip=("$venv/bin/python" -m pip install --disable-pip-version-check)

"${pip[@]}" "torch==2.13.0" numpy scipy pillow  # pillow: fcnseg's imports, for the parity check
"${pip[@]}" --no-deps "torchfcn==1.9.7"
if [[ $with_torchvision == 1 ]]; then
  "${pip[@]}" "torch==2.14.1" torchvision
fi
"$venv/bin/python" -c "import torch; print('peers venv ready:', torch.__version__)"
