"""Model ensembles: average the predictions of several models (CS231n: independently trained models
gain about 1-2%). ``mode='prob'`` averages softmax probabilities (the notes' recipe; the output is the
log of the mean probability, so ``argmax`` and ``cross_entropy``/``nll_loss`` keep working); ``'logit'``
averages raw scores. The two give different results; pick one.

>>> import shendu
>>> from shendu import nn
>>> ens = Ensemble([nn.Linear(3, 2), nn.Linear(3, 2)], mode="prob")
>>> [round(v, 5) for v in ens(shendu.ones(4, 3)).exp().sum(1).tolist()]
[1.0, 1.0, 1.0, 1.0]
"""

from __future__ import annotations

import math

from shendu import functional as F
from shendu.errors import ArgumentError
from shendu.nn import Module, ModuleList

__all__ = ["Ensemble"]


class Ensemble(Module):
    def __init__(self, models, mode: str = "prob"):
        super().__init__()
        if mode not in ("prob", "logit"):
            raise ArgumentError(f"Ensemble: mode must be 'prob' or 'logit', got {mode!r}")
        models = list(models)
        if not models:
            raise ArgumentError("Ensemble: give at least one model")
        self.models = ModuleList(models)
        self.mode = mode

    def forward(self, x):
        outs = [m(x) for m in self.models]
        if self.mode == "logit":
            total = outs[0]
            for o in outs[1:]:
                total = total + o
            return total / len(outs)
        # log(mean_k softmax_k) = logsumexp_k(log_softmax_k) - log K, computed stably
        stacked = F.stack([F.log_softmax(o, dim=1) for o in outs], dim=0)
        return F.logsumexp(stacked, dim=0) - math.log(len(outs))

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"
