"""Regularization layers that drop structure rather than single activations: ``StochasticDepth`` (whole
residual branches) and ``DropConnectConv2d`` (single kernel weights).

Both use the inverted convention of the dropout family: ``p`` is the probability of DROPPING, survivors are
scaled by ``1/(1-p)`` in training, and evaluation is deterministic and unscaled. The ops are
:func:`shendu.functional.stochastic_depth` and :func:`shendu.functional.dropconnect_conv2d`.
"""

from __future__ import annotations

import numbers

from shendu import functional as F
from shendu.errors import ArgumentError
from shendu.nn.conv import Conv2d
from shendu.nn.module import Module

__all__ = ["StochasticDepth", "DropConnectConv2d"]


def _probability(layer: str, p) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ArgumentError(f"{layer}: drop probability has to be between 0 and 1, but got {p!r}; "
                            "p is the probability of DROPPING (keep probability is 1 - p)")
    return float(p)


class StochasticDepth(Module):
    """Stochastic depth, ``torchvision.ops.StochasticDepth(p, mode)``: in training, zero the input of each
    sample (``mode="row"``) or of the whole batch (``"batch"``) with probability ``p`` and scale the rest by
    ``1/(1-p)``; the identity in eval mode. Put it at the end of a residual branch, before the addition.

    >>> import shendu
    >>> from shendu.nn.regularization import StochasticDepth
    >>> sd = StochasticDepth(0.2, "row")
    >>> sd
    StochasticDepth(p=0.2, mode=row)
    >>> sd.eval()(shendu.ones(2, 3)).tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """

    def __init__(self, p: float, mode: str):
        super().__init__()
        self.p = _probability("StochasticDepth", p)
        if mode not in ("row", "batch"):
            raise ArgumentError(f"StochasticDepth: mode has to be either 'batch' or 'row', but got {mode!r}")
        self.mode = mode

    def forward(self, input):
        return F.stochastic_depth(input, self.p, self.mode, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


class DropConnectConv2d(Conv2d):
    """A :class:`Conv2d` whose kernel weights are dropped with probability ``p`` in training (DropConnect).

    Every training forward draws a fresh Bernoulli(1 - p) mask over the weight (one mask for the whole
    batch) and convolves with ``W * mask / (1 - p)``; dropped weights get no gradient. Inference uses the
    mean weights: thanks to the ``1/(1-p)`` scaling that is ``W`` itself, so ``eval()`` makes this layer a
    plain Conv2d with the same outputs. Arguments, initialisation and ``state_dict`` keys (``weight``,
    ``bias``) are Conv2d's, so a trained layer loads into a Conv2d unchanged; ``p`` is keyword-only.

    >>> import shendu
    >>> from shendu.nn.regularization import DropConnectConv2d
    >>> conv = DropConnectConv2d(3, 8, 3, padding=1, p=0.3)
    >>> conv(shendu.randn(2, 3, 16, 16)).shape
    (2, 8, 16, 16)
    >>> conv
    DropConnectConv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), p=0.3)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None, *, p: float = 0.5,
                 algorithm="auto"):
        self.p = _probability("DropConnectConv2d", p)  # checked before any weight is allocated
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype, algorithm=algorithm)

    def forward(self, input):
        padding = self.padding
        if self.padding_mode != "zeros":
            input, padding = F.pad(input, self._explicit_padding(), mode=self.padding_mode), 0
        return F.dropconnect_conv2d(input, self.weight, self.bias, self.stride, padding, self.dilation,
                                    self.groups, self.p, self.training, algorithm=self.algorithm)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}"
