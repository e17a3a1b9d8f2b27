#!/usr/bin/env bash
# Installs what the tests need into .venv (created if missing) and runs them: `bash tests/run.sh [PYTEST ARGS]`.
#
# System tools the tests use are not installed here (that needs root): git, tmux, ripgrep, g++, and
# for the sandbox and eval tests a running Docker engine. .ci/run installs all of those on Debian.
# torch: TORCH_INDEX_URL picks the wheel index, e.g. https://download.pytorch.org/whl/cpu on a machine
# without a GPU (PyPI's default torch build is a multi-GB CUDA one).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
.venv/bin/pip install -q -e '.[dev,local,serve,report,swebench,fleet]'
exec .venv/bin/python -m pytest -q "$@"
