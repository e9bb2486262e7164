"""Loss layers: Modules over the functional losses of :mod:`shendu.ops.loss`, with PyTorch's
constructor arguments (including the legacy ``size_average`` / ``reduce``, mapped to ``reduction``).

Class weights and ``pos_weight`` are registered as buffers, as in torch: they appear in
``state_dict`` and follow ``module.to(dtype)``. The reduction is checked when the layer is built.
"""

from __future__ import annotations

from shendu import functional as F
from shendu.autograd.tensor import Tensor
from shendu.nn.module import Module
from shendu.ops.loss import _reduction

__all__ = ["CrossEntropyLoss", "NLLLoss", "MultiMarginLoss", "MultiClassHingeLoss", "BCELoss", "BCEWithLogitsLoss",
           "MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "KLDivLoss", "GaussianKLLoss"]


def _buffer(value):
    return value if value is None or isinstance(value, Tensor) else Tensor(value)


class _Loss(Module):
    _allowed = ("none", "mean", "sum")

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__()
        self.reduction = _reduction(type(self).__name__, reduction, size_average, reduce, self._allowed)

    def extra_repr(self) -> str:
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


class _WeightedLoss(_Loss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", _buffer(weight))


class CrossEntropyLoss(_WeightedLoss):
    """Cross-entropy of logits against class indices or probabilities; see
    :func:`shendu.functional.cross_entropy` (class dim 1, ``weight``, ``ignore_index``, ``label_smoothing``).

    >>> import shendu
    >>> from shendu import nn
    >>> loss = nn.CrossEntropyLoss()(shendu.zeros(2, 4), shendu.tensor([0, 3]))
    >>> round(loss.item(), 4)  # log 4
    1.3863
    """

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of log-probabilities; see :func:`shendu.functional.nll_loss`."""

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return F.nll_loss(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction)


class MultiMarginLoss(_WeightedLoss):
    """torch's multiclass hinge loss (divided by C); see :func:`shendu.functional.multi_margin_loss`."""

    def __init__(self, p: int = 1, margin: float = 1.0, weight=None, size_average=None, reduce=None,
                 reduction: str = "mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self.p = p
        self.margin = margin

    def forward(self, input, target):
        return F.multi_margin_loss(input, target, self.p, self.margin, self.weight, reduction=self.reduction)


class MultiClassHingeLoss(_Loss):
    """The CS231n multiclass SVM loss (not divided by C); see :func:`shendu.functional.multiclass_hinge_loss`."""

    def __init__(self, margin: float = 1.0, p: int = 1, reduction: str = "mean"):
        super().__init__(reduction=reduction)
        self.margin = margin
        self.p = p

    def forward(self, input, target):
        return F.multiclass_hinge_loss(input, target, self.margin, self.p, reduction=self.reduction)


class BCELoss(_WeightedLoss):
    """Binary cross-entropy of probabilities; see :func:`shendu.functional.binary_cross_entropy`."""

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Stable sigmoid + binary cross-entropy; see :func:`shendu.functional.binary_cross_entropy_with_logits`."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean", pos_weight=None):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", _buffer(weight))
        self.register_buffer("pos_weight", _buffer(pos_weight))

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight, reduction=self.reduction,
                                                  pos_weight=self.pos_weight)


class MSELoss(_Loss):
    """Mean squared error; see :func:`shendu.functional.mse_loss`."""

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """Mean absolute error; see :func:`shendu.functional.l1_loss`."""

    def forward(self, input, target):
        return F.l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    """Quadratic below ``beta``, linear above; see :func:`shendu.functional.smooth_l1_loss`."""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean", beta: float = 1.0):
        super().__init__(size_average, reduce, reduction)
        self.beta = beta

    def forward(self, input, target):
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """Huber loss with threshold ``delta``; see :func:`shendu.functional.huber_loss`."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction=reduction)
        self.delta = delta

    def forward(self, input, target):
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class KLDivLoss(_Loss):
    """KL divergence with input = log Q; see :func:`shendu.functional.kl_div` (prefer
    ``reduction='batchmean'``, the true KL per sample)."""

    _allowed = ("none", "mean", "sum", "batchmean")

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean", log_target: bool = False):
        super().__init__(size_average, reduce, reduction)
        self.log_target = log_target

    def forward(self, input, target):
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


class GaussianKLLoss(_Loss):
    """The VAE's closed-form ``KL(N(mu, exp(logvar)) || N(0, I))``; ``forward(mu, logvar)``. See
    :func:`shendu.functional.gaussian_kl`."""

    def forward(self, mu, logvar):
        return F.gaussian_kl(mu, logvar, reduction=self.reduction)
