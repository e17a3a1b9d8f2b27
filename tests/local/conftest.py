from __future__ import annotations

import pytest
import torch

from tests.local.reference import TINY, hf_model, save_hf


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(2)  # the CI box has 2 cores; keep results independent of the machine


@pytest.fixture(scope="session")
def hf_tiny():
    return hf_model(seed=0, **TINY)


@pytest.fixture(scope="session", params=["original", "transformers"])
def tiny_checkpoint(request, hf_tiny, tmp_path_factory):
    """(transformers model, checkpoint dir) in each config.json dialect."""
    out = tmp_path_factory.mktemp(f"hf-{request.param}")
    return hf_tiny, save_hf(hf_tiny, out, request.param)


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory):
    """`model init --preset tiny` output, made in-process (the CLI tests run the real command)."""
    from agent.backends.local.checkpoint_writer import init_checkpoint

    out = tmp_path_factory.mktemp("init-tiny")
    init_checkpoint(out, "tiny", seed=3)
    return out
