"""FSDP1 is refused with the fix named, rather than sampled from flat parameters."""

from __future__ import annotations

import pytest
import torch

from lda_monitor.errors import UserInputError
from lda_monitor.sharding import is_fsdp2, refuse_fsdp1


def test_an_fsdp1_wrapped_policy_is_refused_with_the_fix(tokenizer):
    from torch.distributed.fsdp import FullyShardedDataParallel

    from tests.tiny import tiny_llama

    policy = tiny_llama(tokenizer, seed=1)
    refuse_fsdp1(policy)  # plain models pass
    # A real FSDP1 wrapper needs an initialised process group; the check only looks at types.
    wrapper = FullyShardedDataParallel.__new__(FullyShardedDataParallel)
    torch.nn.Module.__init__(wrapper)
    policy.model.add_module("fsdp1_unit", wrapper)
    with pytest.raises(UserInputError, match="fsdp_version': 2"):
        refuse_fsdp1(policy)
    assert not is_fsdp2(policy)
