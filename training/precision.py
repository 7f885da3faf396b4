"""Numerics under bf16 autocast: what must stay in full precision."""
import functools

import torch


def at_least_float32(x):
    """``x`` upcast to float32 when it is in a lower precision (bf16 under autocast); float64
    stays float64 (the equivalence tests run in it)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def full_precision(method):
    """Run a frozen-tokenizer method in fp32 (or fp64) even under bf16 autocast: code indices
    (the CE targets) must not depend on the training precision."""
    @functools.wraps(method)
    def wrapper(self, x, *args, **kwargs):
        x = at_least_float32(x)
        with torch.autocast(x.device.type, enabled=False):
            return method(self, x, *args, **kwargs)
    return wrapper
