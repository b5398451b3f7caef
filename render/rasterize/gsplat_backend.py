"""PLACEHOLDER: gsplat CUDA backend (to be written)."""

import torch


def available():
    if not torch.cuda.is_available():
        return False, "torch sees no CUDA GPU"
    return False, "gsplat backend not written yet"
