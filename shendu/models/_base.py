"""What every model of the zoo shares: ``fuse()`` (batch norm folded into the convolution before it)."""

from __future__ import annotations

from shendu import nn

__all__ = ["ZooModel", "fuse_conv_bn_pairs"]


class ZooModel(nn.Module):
    """Base class of the zoo's models. Adds :meth:`fuse`; ``summary`` comes from :class:`~shendu.nn.Module`.

    A submodule names its own conv/BN pairs in a ``fuse_pairs`` attribute, e.g.
    ``fuse_pairs = (("conv1", "bn1"), ("conv2", "bn2"))``; inside a ``Sequential`` a ``Conv2d`` directly
    followed by a ``BatchNorm2d`` is found without being named.
    """

    def fuse(self) -> "ZooModel":
        """Switch to eval mode and fold every BatchNorm2d into the Conv2d before it, for inference.

        Each conv becomes ``W' = W * g / sqrt(var + eps)``, ``b' = (b - mean) * g / sqrt(var + eps) + beta``
        (with the running statistics, so only valid in eval mode) and each BN becomes ``nn.Identity``;
        outputs are unchanged up to rounding, and the ``state_dict`` loses the BN keys. Returns self.
        """
        return fuse_conv_bn_pairs(self)


def _pairs(module: nn.Module) -> list[tuple[str, str]]:
    pairs = list(getattr(module, "fuse_pairs", ()))
    if isinstance(module, nn.Sequential):
        items = list(module.named_children())
        pairs += [(a, b) for (a, ma), (b, mb) in zip(items, items[1:])
                  if isinstance(ma, nn.Conv2d) and isinstance(mb, nn.BatchNorm2d)]
    return pairs


def fuse_conv_bn_pairs(model: nn.Module) -> nn.Module:
    """Fold BN into conv everywhere in ``model`` (see :meth:`ZooModel.fuse`); works on any Module."""
    model.eval()
    for module in list(model.modules()):
        for conv_name, bn_name in _pairs(module):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
                continue  # already fused, or replaced by the user
            # add_module replaces a child in place (attribute assignment would move it to the end,
            # which reorders a Sequential)
            module.add_module(conv_name, nn.fuse_conv_bn(conv, bn))
            module.add_module(bn_name, nn.Identity())
    return model
