"""Basic layers: ``Linear``, ``Bilinear``, ``Identity``, ``Flatten``, ``Unflatten``, ``Embedding`` and the
dropout family (``Dropout``, ``Dropout1d``, ``Dropout2d``, ``AlphaDropout``, ``DropConnect``).

Each layer holds its parameters and calls the functional op of the same name; parameters are
initialised exactly as PyTorch's ``reset_parameters`` does (same distributions), and
weights copied from PyTorch give the same outputs.
"""

from __future__ import annotations

import math

import numpy as np

from shendu import backend
from shendu import functional as F
from shendu.autograd.engine import no_grad
from shendu.autograd.tensor import Tensor
from shendu.errors import ArgumentError, ShapeError, fmt_shape
from shendu.nn import init
from shendu.nn.module import Module, Parameter

__all__ = ["Linear", "Bilinear", "Identity", "Flatten", "Unflatten", "Embedding", "Dropout", "Dropout1d",
           "Dropout2d", "AlphaDropout", "DropConnect"]


def _empty(*shape, dtype=None) -> np.ndarray:
    return np.empty(shape, dtype=np.dtype(dtype) if dtype is not None else backend.get_default_dtype())


def _positive(layer: str, **sizes) -> None:
    for name, v in sizes.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise ArgumentError(f"{layer}: {name} must be a non-negative integer, got {v!r}")


class Linear(Module):
    """Fully connected layer ``y = x W^T + b``.

    ``weight (out_features, in_features)`` ~ U(-1/sqrt(in), 1/sqrt(in)) (torch's ``kaiming_uniform_`` with
    ``a=sqrt(5)``), ``bias (out_features,)`` ~ U(-1/sqrt(in), 1/sqrt(in)).
    Shapes: input ``(*, in_features)`` -> output ``(*, out_features)``.

    >>> import shendu
    >>> from shendu import nn
    >>> fc = nn.Linear(20, 30)
    >>> fc(shendu.randn(128, 20)).shape
    (128, 30)
    >>> fc
    Linear(in_features=20, out_features=30, bias=True)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        _positive("Linear", in_features=in_features, out_features=out_features)
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(_empty(out_features, in_features, dtype=dtype))
        self.bias = Parameter(_empty(out_features, dtype=dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Bilinear(Module):
    """``y_k = x1^T A_k x2 + b_k``; ``weight (out, in1, in2)`` and ``bias`` ~ U(-1/sqrt(in1), 1/sqrt(in1)).

    >>> import shendu
    >>> from shendu import nn
    >>> nn.Bilinear(3, 4, 5)(shendu.randn(2, 3), shendu.randn(2, 4)).shape
    (2, 5)
    """

    def __init__(self, in1_features: int, in2_features: int, out_features: int, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        _positive("Bilinear", in1_features=in1_features, in2_features=in2_features, out_features=out_features)
        self.in1_features, self.in2_features, self.out_features = in1_features, in2_features, out_features
        self.weight = Parameter(_empty(out_features, in1_features, in2_features, dtype=dtype))
        self.bias = Parameter(_empty(out_features, dtype=dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.weight.shape[1]) if self.weight.shape[1] else 0
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input1, input2):
        return F.bilinear(input1, input2, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")


class Identity(Module):
    """Returns its input; accepts and ignores any constructor arguments (a placeholder, e.g. for a
    removed classifier head)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Flatten(Module):
    """Flatten dims ``start_dim..end_dim`` into one: ``(N, C, H, W) -> (N, C*H*W)`` by default.

    >>> import shendu
    >>> from shendu import nn
    >>> nn.Flatten()(shendu.zeros(2, 3, 4, 5)).shape
    (2, 60)
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        x = input if isinstance(input, Tensor) else Tensor(input)
        nd = max(x.ndim, 1)
        s, e = self.start_dim % nd, self.end_dim % nd
        if not (-nd <= self.start_dim < nd and -nd <= self.end_dim < nd) or s > e:
            raise ShapeError(f"Flatten: start_dim={self.start_dim}, end_dim={self.end_dim} do not select a "
                             f"range of dims of an input with shape {fmt_shape(x.shape)}")
        shape = x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:]
        return x.reshape(shape)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split dim ``dim`` into ``unflattened_size``: ``Unflatten(1, (C, H, W))`` turns ``(N, C*H*W)`` into
    ``(N, C, H, W)``.

    >>> import shendu
    >>> from shendu import nn
    >>> nn.Unflatten(1, (3, 4))(shendu.zeros(2, 12)).shape
    (2, 3, 4)
    """

    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, input):
        x = input if isinstance(input, Tensor) else Tensor(input)
        if not -x.ndim <= self.dim < x.ndim:
            raise ShapeError(f"Unflatten: dim {self.dim} is out of range for an input with shape "
                             f"{fmt_shape(x.shape)}")
        d = self.dim % x.ndim
        sizes = list(self.unflattened_size)
        known = math.prod(s for s in sizes if s != -1)
        if sizes.count(-1) > 1 or (sizes.count(-1) == 0 and known != x.shape[d]) or \
                (sizes.count(-1) == 1 and (known == 0 or x.shape[d] % known)):
            raise ShapeError(f"Unflatten: cannot split dim {self.dim} of size {x.shape[d]} (input shape "
                             f"{fmt_shape(x.shape)}) into {self.unflattened_size}; the sizes must multiply "
                             f"to {x.shape[d]}")
        return x.reshape(x.shape[:d] + tuple(sizes) + x.shape[d + 1:])

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class Embedding(Module):
    """A lookup table of ``num_embeddings`` vectors of size ``embedding_dim``, initialised N(0, 1)
    (the ``padding_idx`` row is zero and receives no gradient).

    Shapes: integer input ``(*)`` -> output ``(*, embedding_dim)``.

    >>> import shendu
    >>> from shendu import nn
    >>> emb = nn.Embedding(10, 3, padding_idx=0)
    >>> emb(shendu.tensor([[0, 2], [4, 9]])).shape
    (2, 2, 3)
    >>> emb.weight[0].tolist()
    [0.0, 0.0, 0.0]
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm=None, norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False,
                 _weight=None, _freeze: bool = False, device=None, dtype=None):
        super().__init__()
        _positive("Embedding", num_embeddings=num_embeddings, embedding_dim=embedding_dim)
        if max_norm is not None or scale_grad_by_freq or sparse:
            raise ArgumentError("Embedding: max_norm, scale_grad_by_freq and sparse are not supported")
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ArgumentError(f"Embedding: padding_idx {padding_idx} must be within num_embeddings "
                                    f"{num_embeddings}")
            padding_idx %= num_embeddings
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        if _weight is None:
            self.weight = Parameter(_empty(num_embeddings, embedding_dim, dtype=dtype), requires_grad=not _freeze)
            self.reset_parameters()
        else:
            w = _weight if isinstance(_weight, Tensor) else Tensor(_weight)
            if w.shape != (num_embeddings, embedding_dim):
                raise ShapeError(f"Embedding: _weight has shape {fmt_shape(w.shape)}, expected "
                                 f"({num_embeddings}, {embedding_dim})")
            self.weight = Parameter(w.data, requires_grad=not _freeze)

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            with no_grad():
                self.weight.data[self.padding_idx] = 0

    @classmethod
    def from_pretrained(cls, embeddings, freeze: bool = True, padding_idx: int | None = None) -> "Embedding":
        """An Embedding holding ``embeddings (num, dim)``; frozen (no gradient) by default."""
        e = embeddings if isinstance(embeddings, Tensor) else Tensor(embeddings)
        if e.ndim != 2:
            raise ShapeError(f"Embedding.from_pretrained: embeddings must be 2-D, got shape {fmt_shape(e.shape)}")
        return cls(e.shape[0], e.shape[1], padding_idx=padding_idx, _weight=e, _freeze=freeze)

    def forward(self, input):
        return F.embedding(input, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")


class _DropoutNd(Module):
    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ArgumentError(f"{type(self).__name__}: dropout probability has to be between 0 and 1, but got "
                                f"{p}; p is the probability of DROPPING a unit (p_keep = 1 - p)")
        self.p, self.inplace = float(p), inplace

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Inverted dropout: in training, zero each element with probability ``p`` and scale the kept ones
    by ``1/(1-p)``; in eval mode, the identity.

    ``p`` is the probability of DROPPING (torch's convention). The notes use the keep probability
    ``p_keep = 1 - p`` (``mask = (rand < p_keep) / p_keep``), so the notes' ``p = 0.5`` is the same layer.

    >>> import shendu
    >>> from shendu import nn
    >>> drop = nn.Dropout(0.5)
    >>> drop.eval()(shendu.ones(4)).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """

    def forward(self, input):
        return F.dropout(input, self.p, self.training, self.inplace)


class Dropout1d(_DropoutNd):
    """Zero whole channels of ``(N, C, L)`` / ``(C, L)`` input with probability ``p`` (train mode)."""

    def forward(self, input):
        return F.dropout1d(input, self.p, self.training, self.inplace)


class Dropout2d(_DropoutNd):
    """Zero whole feature maps of ``(N, C, H, W)`` input (or channels of ``(N, C, L)``) with probability
    ``p``, scaling the rest by ``1/(1-p)``; identity in eval mode."""

    def forward(self, input):
        return F.dropout2d(input, self.p, self.training, self.inplace)


class AlphaDropout(_DropoutNd):
    """Dropout that keeps SELU's self-normalisation (zero mean, unit variance); identity in eval mode."""

    def forward(self, input):
        return F.alpha_dropout(input, self.p, self.training)


class DropConnect(Module):
    """DropConnect around a :class:`Linear`: drops WEIGHTS (connections), not activations.

    Each training forward draws a fresh Bernoulli(1 - p) mask over ``W`` (shared by the whole batch, so
    it is still one matrix product) and uses ``W * mask / (1 - p)``; dropped connections get no gradient.
    Because of that scaling, evaluation uses all connections unscaled: ``eval()`` makes it the wrapped
    Linear. The paper (Wan et al., 2013) samples a mask per example and infers by moment matching a
    Gaussian over the pre-activations; the shared mask and mean-weight inference are the cheap, common
    variant. The bias is not dropped. State-dict keys are ``linear.weight``, ``linear.bias``.

    >>> import shendu
    >>> from shendu import nn
    >>> layer = nn.DropConnect(nn.Linear(8, 4), p=0.3)
    >>> layer(shendu.randn(5, 8)).shape
    (5, 4)
    """

    def __init__(self, linear_module: Linear, p: float = 0.5):
        super().__init__()
        if not isinstance(linear_module, Linear):
            raise ArgumentError(f"DropConnect: expected an nn.Linear to wrap, got {type(linear_module).__name__}")
        if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ArgumentError(f"DropConnect: drop probability has to be between 0 and 1, but got {p}")
        self.linear = linear_module
        self.p = float(p)

    def forward(self, input):
        return F.dropconnect_linear(input, self.linear.weight, self.linear.bias, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
