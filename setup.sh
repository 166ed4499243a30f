#!/usr/bin/env bash
# Set up deepsuite on a fresh Debian/Ubuntu machine: the offline datasets from Debian's packages,
# then a virtual environment in .venv with the suite, TensorFlow (CPU), JAX (CPU) and the test tools.
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
if command -v apt-get >/dev/null && { [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; }; then
  if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    echo "setup: installing Debian's dataset-fashion-mnist (offline Fashion-MNIST)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
  fi
else
  echo "setup: no apt-get/root here; Fashion-MNIST will be downloaded by Keras on first use (needs the internet)"
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[tensorflow,jax,server,system,test]"
echo "setup: done - try .venv/bin/deepsuite list"
