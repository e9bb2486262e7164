"""Hyperparameter search following the notes' recipe (CS231n "Babysitting the learning process"):

1. :func:`check_initial_loss` - with small random weights the softmax loss starts near ``ln(C)``.
2. :func:`overfit_small` - a tiny sample (say 20 images) must reach ~100% training accuracy.
3. :func:`find_lr` - the learning rate that makes the loss drop within ~100 iterations.
4. :func:`random_search` - coarse random search, lr and weight decay sampled log-uniformly, few epochs.
5. :func:`refine` the ranges around the best trial (widened when the best sits at an edge), search again.
6. Train the best setting longer (:func:`shendu.train.fit`).

and k-fold cross-validation: :func:`kfold_indices` (the folds of scikit-learn's ``KFold``) and
:func:`cross_validate`. Every search returns rows (a list of dicts) and :func:`format_table` prints them.
Data is given as ``(x, y)`` arrays; ``build_model()`` returns a fresh model.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from shendu import backend
from shendu.data import DataLoader, TensorDataset
from shendu.errors import ArgumentError
from shendu.train.loop import _batch, evaluate, fit, train_step

__all__ = ["check_initial_loss", "overfit_small", "find_lr", "sample_space", "random_search", "refine",
           "format_table", "kfold_indices", "cross_validate", "SearchResult"]


def _loader(x, y, batch_size: int, shuffle: bool = False, seed: int = 0) -> DataLoader:
    """Batches of in-memory arrays, shuffled by their own seeded generator (the global one is not touched)."""
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, generator=backend.Generator(seed))


def _default_optimizer(params, lr, weight_decay=0.0):
    from shendu.optim import Adam
    return Adam(params, lr=lr, weight_decay=weight_decay)


def _loss_fn(loss_fn):
    if loss_fn is not None:
        return loss_fn
    from shendu.nn import CrossEntropyLoss
    return CrossEntropyLoss()


def format_table(rows: list[dict], columns: list[str] | None = None, sort_by: str | None = None,
                 descending: bool = True) -> str:
    """A fixed-width text table of ``rows`` (floats in 4 significant digits).

    >>> print(format_table([{"lr": 0.001, "val_accuracy": 0.91}, {"lr": 0.1, "val_accuracy": 0.4}]))
    lr     val_accuracy
    0.001  0.91
    0.1    0.4
    """
    if not rows:
        return "(no results)"
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    if sort_by is not None:  # rows without a finite value go last
        ranked = [r for r in rows if isinstance(r.get(sort_by), (int, float)) and not _nan(r[sort_by])]
        rows = sorted(ranked, key=lambda r: r[sort_by], reverse=descending) + [r for r in rows if r not in ranked]
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def _nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


# ---------------------------------------------------------------------------------- sanity checks
def check_initial_loss(model, x, y, loss_fn=None, num_classes: int | None = None, tolerance: float = 0.25) -> dict:
    """Loss of the untrained model on ``(x, y)`` versus ``ln(C)``: ``{"loss", "expected", "ok"}``.
    ``ok`` when they agree within ``tolerance`` (relative); a much larger loss means too-large initial
    weights or a bug in the loss."""
    num_classes = num_classes or int(np.max(y)) + 1
    res = evaluate(model, _loader(x, y, batch_size=max(len(x), 1)), _loss_fn(loss_fn), metrics=())
    expected = math.log(num_classes)
    return {"loss": res["loss"], "expected": expected, "ok": abs(res["loss"] - expected) <= tolerance * expected}


def overfit_small(build_model: Callable, x, y, n: int = 20, epochs: int = 200, lr: float = 1e-2,
                  optimizer_fn: Callable = _default_optimizer, loss_fn=None, seed: int = 0) -> dict:
    """Train on the first ``n`` samples without regularization; returns ``{"loss", "accuracy", "ok"}``
    (``ok``: training accuracy reached 100%). Failing this means a bug, not a hyperparameter problem."""
    backend.manual_seed(seed)
    model = build_model()
    loader = _loader(x[:n], y[:n], batch_size=n)
    hist = fit(model, loader, loss_fn=_loss_fn(loss_fn), optimizer=optimizer_fn(model.parameters(), lr),
               epochs=epochs, progress=False)
    final = evaluate(model, loader, _loss_fn(loss_fn))
    return {"loss": final["loss"], "accuracy": final["accuracy"], "ok": final["accuracy"] == 1.0,
            "epochs": hist.epochs}


def find_lr(build_model: Callable, x, y, lrs=None, iterations: int = 100, batch_size: int = 32,
            optimizer_fn: Callable = _default_optimizer, loss_fn=None, seed: int = 0) -> dict:
    """Train a fresh model ``iterations`` steps at each learning rate in ``lrs`` (default ``1e-6 .. 1``
    by decades); the row of each has the first and last loss (mean of the last 10 steps). Too small:
    the loss barely moves; too large: it explodes (nan/inf). Returns ``{"rows", "best_lr", "table"}``,
    ``best_lr`` being the rate with the lowest final loss."""
    lrs = list(lrs) if lrs is not None else [10.0 ** e for e in range(-6, 1)]
    fn = _loss_fn(loss_fn)
    rows = []
    for lr in lrs:
        backend.manual_seed(seed)
        model = build_model()
        opt = optimizer_fn(model.parameters(), lr)
        loader = _loader(x, y, batch_size=batch_size, shuffle=True, seed=seed)
        losses = []
        model.train()
        while len(losses) < iterations:
            for batch in loader:
                bx, by = _batch(batch)
                loss, _ = train_step(model, bx, by, fn, opt)
                losses.append(loss.item())
                if len(losses) >= iterations or not math.isfinite(losses[-1]):
                    break
            if not math.isfinite(losses[-1]):
                break
        final = float(np.mean(losses[-10:])) if math.isfinite(losses[-1]) else float("inf")
        rows.append({"lr": lr, "first_loss": losses[0], "final_loss": final,
                     "drop": losses[0] - final if math.isfinite(final) else float("-inf")})
    best = min(rows, key=lambda r: r["final_loss"])
    return {"rows": rows, "best_lr": best["lr"], "table": format_table(rows)}


# --------------------------------------------------------------------------------------- searches
def sample_space(space: dict, rng: np.random.Generator) -> dict:
    """Draw one setting: ``{"lr": (1e-5, 1e-1, "log"), "dropout": (0.0, 0.5), "width": [64, 128]}``
    (``"log"``: log-uniform, the notes' ``10**uniform(-6, -3)``; a pair: uniform; a list: a choice)."""
    out = {}
    for name, spec in space.items():
        if isinstance(spec, list):
            out[name] = spec[int(rng.integers(len(spec)))]
        elif isinstance(spec, tuple) and len(spec) == 3 and spec[2] == "log":
            lo, hi = spec[:2]
            if lo <= 0 or hi < lo:
                raise ArgumentError(f"sample_space: log range for {name!r} needs 0 < low <= high, got {spec}")
            out[name] = float(10 ** rng.uniform(math.log10(lo), math.log10(hi)))
        elif isinstance(spec, tuple) and len(spec) == 2:
            out[name] = float(rng.uniform(*spec))
        else:
            raise ArgumentError(f"sample_space: {name!r}: expected (low, high), (low, high, 'log') or a list of "
                                f"choices, got {spec!r}")
    return out


class SearchResult:
    """The rows of a search (one dict per trial: the setting and its figures), the best row and a table."""

    def __init__(self, rows: list[dict], metric: str, mode: str, space: dict):
        self.rows, self.metric, self.mode, self.space = rows, metric, mode, space
        finite = [r for r in rows if isinstance(r.get(metric), float) and math.isfinite(r[metric])]
        pick = max if mode == "max" else min
        self.best = pick(finite, key=lambda r: r[metric]) if finite else None

    @property
    def table(self) -> str:
        return format_table(self.rows, sort_by=self.metric, descending=self.mode == "max")

    def __str__(self) -> str:
        return self.table


def random_search(build_model: Callable, train: tuple, val: tuple, space: dict | None = None, trials: int = 10,
                  epochs: int = 2, batch_size: int = 32, optimizer_fn: Callable = _default_optimizer, loss_fn=None,
                  metric: str = "val_accuracy", mode: str = "max", seed: int = 0) -> SearchResult:
    """Random search over ``space`` (default lr in ``[1e-4, 1e-1]`` and weight decay in ``[1e-6, 1e-2]``,
    both log-uniform): ``trials`` short runs of ``epochs`` epochs, selected on validation data.
    ``build_model(**setting)`` gets the non-optimizer keys of a setting when it accepts them."""
    space = space or {"lr": (1e-4, 1e-1, "log"), "weight_decay": (1e-6, 1e-2, "log")}
    rng = np.random.default_rng(seed)
    rows = []
    for trial in range(trials):
        setting = sample_space(space, rng)
        model_kw = {k: v for k, v in setting.items() if k not in ("lr", "weight_decay")}
        backend.manual_seed(seed + trial)
        model = build_model(**model_kw)
        opt = optimizer_fn(model.parameters(), setting.get("lr", 1e-3), setting.get("weight_decay", 0.0))
        hist = fit(model, _loader(*train, batch_size=batch_size, shuffle=True, seed=seed + trial),
                   _loader(*val, batch_size=256), loss_fn=_loss_fn(loss_fn), optimizer=opt, epochs=epochs,
                   progress=False)
        rows.append({"trial": trial, **setting, "loss": hist["loss"][-1], "val_loss": hist["val_loss"][-1],
                     "val_accuracy": hist["val_accuracy"][-1] if "val_accuracy" in hist else None})
    return SearchResult(rows, metric, mode, space)


def refine(space: dict, best: dict, factor: float = 10.0 ** 0.5) -> dict:
    """Narrow log ranges to ``[best / factor, best * factor]`` and linear ones to a quarter of their width
    around the best. A best value in the outer tenth of a range means the range was too small: it is
    widened on that side instead (the notes: "if the best is at the edge, widen")."""
    out = {}
    for name, spec in space.items():
        if not isinstance(spec, tuple) or name not in best:
            out[name] = spec
            continue
        v, (lo, hi) = best[name], spec[:2]
        if len(spec) == 3:
            pos = (math.log10(v) - math.log10(lo)) / max(math.log10(hi) - math.log10(lo), 1e-12)
            if pos < 0.1:
                out[name] = (lo / (hi / lo) ** 0.5, v * factor, "log")
            elif pos > 0.9:
                out[name] = (v / factor, hi * (hi / lo) ** 0.5, "log")
            else:
                out[name] = (max(lo, v / factor), min(hi, v * factor), "log")
        else:
            width = (hi - lo) / 8
            out[name] = (max(lo, v - width), min(hi, v + width))
    return out


# ------------------------------------------------------------------------------ cross-validation
def kfold_indices(n: int, k: int = 5, shuffle: bool = False,
                  seed: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train_idx, val_idx)`` for each of ``k`` folds, identical to scikit-learn's
    ``KFold(k, shuffle=shuffle, random_state=seed).split``: the first ``n % k`` folds get one extra
    sample; with ``shuffle`` the order comes from ``np.random.RandomState(seed)`` as in sklearn.

    >>> [v.tolist() for _, v in kfold_indices(5, 2)]
    [[0, 1, 2], [3, 4]]
    """
    if not 2 <= int(k) <= n:
        raise ArgumentError(f"kfold_indices: k must be between 2 and the number of samples {n}, got {k}")
    order = np.arange(n)
    if shuffle:
        np.random.RandomState(seed).shuffle(order)
    sizes = np.full(k, n // k)
    sizes[: n % k] += 1
    folds, start = [], 0
    for size in sizes:
        mask = np.zeros(n, bool)
        mask[order[start:start + size]] = True
        folds.append((np.flatnonzero(~mask), np.flatnonzero(mask)))
        start += size
    return folds


def cross_validate(build_model: Callable, dataset: tuple, k: int = 5, epochs: int = 3, batch_size: int = 32,
                   lr: float = 1e-3, weight_decay: float = 0.0, optimizer_fn: Callable = _default_optimizer,
                   loss_fn=None, shuffle: bool = True, seed: int = 0, preprocess: Callable | None = None) -> dict:
    """Train on ``k - 1`` folds, validate on the remaining one, rotate; return the rows (one per fold),
    the mean and standard deviation of validation loss and accuracy, and a table.

    ``preprocess(x_train)`` (optional) is fitted on each fold's training part only and returns a function
    applied to both parts (e.g. standardisation with the training mean and std), as the notes require.
    """
    x, y = (np.asarray(getattr(a, "data", a)) for a in dataset)
    rows = []
    for fold, (tr, va) in enumerate(kfold_indices(len(x), k, shuffle, seed)):
        xtr, xva = x[tr], x[va]
        if preprocess is not None:
            transform = preprocess(xtr)
            xtr, xva = transform(xtr), transform(xva)
        backend.manual_seed(seed + fold)
        model = build_model()
        hist = fit(model, _loader(xtr, y[tr], batch_size=batch_size, shuffle=True, seed=seed + fold),
                   _loader(xva, y[va], batch_size=256), loss_fn=_loss_fn(loss_fn),
                   optimizer=optimizer_fn(model.parameters(), lr, weight_decay), epochs=epochs, progress=False)
        rows.append({"fold": fold, "train_size": len(tr), "val_size": len(va), "loss": hist["loss"][-1],
                     "val_loss": hist["val_loss"][-1], "val_accuracy": hist["val_accuracy"][-1]})
    acc = np.array([r["val_accuracy"] for r in rows])
    vloss = np.array([r["val_loss"] for r in rows])
    return {"rows": rows, "mean_val_accuracy": float(acc.mean()), "std_val_accuracy": float(acc.std()),
            "mean_val_loss": float(vloss.mean()), "std_val_loss": float(vloss.std()), "table": format_table(rows)}
