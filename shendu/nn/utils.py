"""``shendu.nn.utils``: gradient clipping under its PyTorch name (defined in :mod:`shendu.optim.clip`)."""

from shendu.optim.clip import clip_grad_norm_, clip_grad_value_, clip_grads_with_norm_, get_total_norm  # noqa: F401

__all__ = ["clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_", "get_total_norm"]
