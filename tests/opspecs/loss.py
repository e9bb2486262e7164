"""Registry entries for shendu/ops/loss.py."""

import numpy as np

from shendu.errors import ArgumentError, DTypeError, IndexOutOfRangeError, ShapeError
from tests.opspecs import ErrorCase, OpSpec, Sample, idx, pos, r

_rng = np.random.default_rng(77)


def _probs(*shape, axis=1):
    """Rows of class probabilities along ``axis`` (a soft target)."""
    e = np.exp(_rng.normal(size=shape))
    return e / e.sum(axis=axis, keepdims=True)


def _with_ignored(t, ignore=-100, every=3):
    t = t.copy()
    t.reshape(-1)[::every] = ignore
    return t


def _unit(*shape, low=0.05, high=0.95):
    return _rng.uniform(low, high, shape)


def _fn(name):
    return lambda m, *args, **kw: getattr(m.nn.functional, name)(*args, **kw)


_RED = ["sum", "none"]

# ------------------------------------------------------------------------------------ cross-entropy
_CE = [
    Sample((r(5, 7) * 3, idx(7, 5)), desc="nc"),
    Sample((r(1, 4), idx(4, 1)), desc="batch1"),
    Sample((r(6), np.array(2)), desc="unbatched"),
    Sample((r(6), np.array(4)), {"reduction": "none"}, desc="unbatched_none"),
    Sample((r(2, 4, 3, 5), idx(4, 2, 3, 5)), desc="nchw"),
    Sample((r(2, 4, 3, 5), idx(4, 2, 3, 5)), {"reduction": "none"}, desc="nchw_none"),
    Sample((r(5, 7), _with_ignored(idx(7, 5))), desc="ignore"),
    Sample((r(5, 7), idx(7, 5)), {"ignore_index": 2}, desc="ignore_class"),
    Sample((r(5, 7), idx(7, 5)), {"weight": pos(7)}, desc="weight"),
    Sample((r(2, 4, 3, 3), _with_ignored(idx(4, 2, 3, 3))), {"weight": pos(4)}, desc="nchw_weight_ignore"),
    Sample((r(5, 7), _with_ignored(idx(7, 5))), {"weight": pos(7), "reduction": "none"},
           desc="weight_ignore_none"),
    Sample((r(5, 7), idx(7, 5)), {"label_smoothing": 0.1}, desc="smooth"),
    Sample((r(5, 7), _with_ignored(idx(7, 5))), {"label_smoothing": 0.2, "weight": pos(7)},
           desc="smooth_weight_ignore"),
    Sample((r(2, 3, 4), _with_ignored(idx(3, 2, 4), every=2)), {"label_smoothing": 0.3, "reduction": "none"},
           desc="smooth_none"),
    Sample((r(2, 3, 4), idx(3, 2, 4)), {"label_smoothing": 0.15, "reduction": "sum", "weight": pos(3)},
           desc="smooth_sum"),
    Sample((r(5, 7), _probs(5, 7)), desc="probs"),
    Sample((r(2, 4, 3, 2), _probs(2, 4, 3, 2)), {"weight": pos(4)}, desc="probs_nchw_weight"),
    Sample((r(5, 7), _probs(5, 7)), {"label_smoothing": 0.1, "reduction": "none"}, desc="probs_smooth"),
    Sample((r(6), _probs(6, axis=0)), {"reduction": "sum"}, desc="probs_unbatched"),
    Sample((np.array([[100.0, -100.0, 0.0], [-100.0, 100.0, 50.0]]), np.array([1, 1])), desc="extreme"),
] + [Sample((r(5, 7), idx(7, 5)), {"reduction": red}, desc=red) for red in _RED]

_CE_ERR = [
    ErrorCase((r(4, 5), idx(5, 4).astype(np.int32)), exc=DTypeError, match="int64 class indices.*int32"),
    ErrorCase((r(4, 5), r(4)), exc=DTypeError, match="target.long"),
    ErrorCase((r(4, 5), idx(5, 3)), exc=ShapeError, match=r"target shape \(3,\) does not fit input shape \(4, 5\)"),
    ErrorCase((r(2, 3, 4), idx(3, 2, 3)), exc=ShapeError, match=r"expected target shape \(2, 4\)"),
    ErrorCase((r(4, 5), np.array([0, 1, 7, 2])), exc=IndexOutOfRangeError, match="class index 7.*C=5"),
    ErrorCase((r(4, 5), np.array([0, -1, 1, 2])), exc=IndexOutOfRangeError, match="class index -1"),
    ErrorCase((r(4, 5), idx(5, 4)), {"reduction": "avg"}, ArgumentError, "reduction must be one of"),
    ErrorCase((r(4, 5), idx(5, 4)), {"weight": pos(4)}, ShapeError, r"weight has shape \(4,\), expected \(5,\)"),
    ErrorCase((r(4, 5), idx(5, 4)), {"label_smoothing": 1.5}, ArgumentError, "label_smoothing"),
    ErrorCase((r(4, 5), _probs(4, 6)), exc=ShapeError, match="does not fit input shape"),
]

# ------------------------------------------------------------------------------------ NLL and hinge
_NLL = [
    Sample((r(5, 7), idx(7, 5)), desc="nc"),
    Sample((r(6), np.array(3)), desc="unbatched"),
    Sample((r(2, 4, 3, 5), idx(4, 2, 3, 5)), desc="nchw"),
    Sample((r(5, 7), _with_ignored(idx(7, 5))), {"weight": pos(7)}, desc="weight_ignore"),
    Sample((r(2, 4, 3, 3), _with_ignored(idx(4, 2, 3, 3))), {"weight": pos(4), "reduction": "none"},
           desc="nchw_weight_none"),
] + [Sample((r(5, 7), idx(7, 5)), {"reduction": red}, desc=red) for red in _RED]

_MM = [
    Sample((r(5, 7), idx(7, 5)), desc="p1"),
    Sample((r(1, 4), idx(4, 1)), desc="batch1"),
    Sample((r(6), np.array(2)), desc="unbatched"),
    Sample((r(5, 7), idx(7, 5)), {"p": 2}, desc="p2"),
    Sample((r(5, 7), idx(7, 5)), {"margin": 0.5, "weight": pos(7)}, desc="margin_weight"),
    Sample((r(5, 7), idx(7, 5)), {"p": 2, "weight": pos(7), "reduction": "none"}, desc="p2_weight_none"),
] + [Sample((r(5, 7), idx(7, 5)), {"reduction": red}, desc=red) for red in _RED]

_MM_ERR = [
    ErrorCase((r(4, 5), idx(5, 4)), {"p": 3}, ArgumentError, "p must be 1 or 2"),
    ErrorCase((r(2, 4, 5), idx(4, 2, 5)), exc=ShapeError, match=r"input must be \(C,\) or \(N, C\)"),
    ErrorCase((r(4, 5), np.array([0, 5, 1, 2])), exc=IndexOutOfRangeError, match="class index 5"),
]


def _svm_via_torch(m, x, t, **kw):
    """torch's multi_margin_loss divides by C; the CS231n SVM loss is C times it."""
    return m.nn.functional.multi_margin_loss(x, t, **kw) * x.shape[-1]


_SVM = [
    Sample((r(5, 7), idx(7, 5)), desc="nc"),
    Sample((r(6), np.array(1)), desc="unbatched"),
    Sample((r(5, 7), idx(7, 5)), {"p": 2, "reduction": "none"}, desc="squared_none"),
    Sample((r(5, 7), idx(7, 5)), {"margin": 2.0, "reduction": "sum"}, desc="margin_sum"),
]

# ----------------------------------------------------------------------------------------------- BCE
_BCE = [
    Sample((_unit(5, 7), _unit(5, 7, low=0.0, high=1.0)), desc="soft"),
    Sample((_unit(4, 3), (idx(2, 4, 3)).astype(float)), desc="hard"),
    Sample((_unit(9), _unit(9, low=0, high=1)), {"weight": pos(9)}, desc="weight"),
    Sample((_unit(2, 3, 4), _unit(2, 3, 4, low=0, high=1)), {"weight": pos(4), "reduction": "none"},
           desc="weight_bcast_none"),
] + [Sample((_unit(5, 7), _unit(5, 7, low=0, high=1)), {"reduction": red}, desc=red) for red in _RED]

_BCE_ERR = [
    ErrorCase((np.array([0.5, 1.2]), np.array([1.0, 0.0])), exc=ArgumentError, match="probabilities in \\[0, 1\\]"),
    ErrorCase((_unit(4, 1), _unit(4)), exc=ShapeError,
              match=r"target shape \(4,\) does not match input shape \(4, 1\)"),
    ErrorCase((_unit(4, 3), _unit(4, 3)), {"weight": pos(2)}, ShapeError, "weight of shape"),
]

_EXTREME = np.array([[100.0, -100.0, 50.0, -50.0], [100.0, -100.0, 0.5, -30.0]])
_BCEL = [
    Sample((r(5, 7) * 3, _unit(5, 7, low=0, high=1)), desc="soft"),
    Sample((_EXTREME, np.array([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]])), desc="extreme"),
    Sample((_EXTREME, np.array([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]])), {"reduction": "none"},
           desc="extreme_none"),
    Sample((r(5, 7) * 3, (idx(2, 5, 7)).astype(float)), {"pos_weight": pos(7, low=0.5, high=4)}, desc="pos_weight"),
    Sample((_EXTREME, _unit(2, 4, low=0, high=1)), {"pos_weight": pos(4), "weight": pos(2, 4)},
           desc="extreme_both_weights"),
    Sample((r(2, 3, 4), _unit(2, 3, 4, low=0, high=1)), {"weight": pos(3, 1), "reduction": "sum"},
           desc="weight_bcast_sum"),
    Sample((r(1, 1), np.array([[1.0]])), desc="batch1"),
] + [Sample((r(5, 7) * 3, _unit(5, 7, low=0, high=1)), {"reduction": red}, desc=red) for red in _RED]

# --------------------------------------------------------------------------------- regression losses
_REG = [
    Sample((r(3, 5), r(3, 5)), desc="same"),
    Sample((r(2, 3, 4), r(2, 3, 4)), {"reduction": "sum"}, desc="sum"),
    Sample((r(7), r(7)), {"reduction": "none"}, desc="none"),
    Sample((r(3, 5), r(5)), desc="target_bcast"),
    Sample((r(1, 1), r(1, 1)), desc="batch1"),
]
_REG_ERR = [
    ErrorCase((r(4, 1), r(4)), exc=ShapeError, match=r"target shape \(4,\) does not match input shape \(4, 1\)"),
    ErrorCase((r(4, 3), r(4, 3)), {"reduction": "max"}, ArgumentError, "reduction must be one of"),
]


def _regression(name, extra=None, **kw):
    samples = [Sample(s.args, {**s.kwargs, **(extra or {})}, desc=s.desc) for s in _REG]
    return OpSpec(name, _fn(name), samples, **kw)


# ----------------------------------------------------------------------------------------- KL terms
def _logq(*shape):
    return np.log(_probs(*shape))


_KL = [
    Sample((_logq(5, 7), _probs(5, 7)), desc="mean"),
    Sample((_logq(5, 7), _probs(5, 7)), {"reduction": "batchmean"}, desc="batchmean"),
    Sample((_logq(2, 3, 4), _probs(2, 3, 4)), {"reduction": "sum"}, desc="sum"),
    Sample((_logq(3, 4), _probs(3, 4)), {"reduction": "none"}, desc="none"),
    Sample((_logq(5, 7), _logq(5, 7)), {"reduction": "batchmean", "log_target": True}, desc="log_target"),
    Sample((_logq(3, 4), _logq(3, 4)), {"reduction": "none", "log_target": True}, desc="log_target_none"),
]


def _torch_gaussian_kl(m, mu, logvar, reduction="mean"):
    per = (0.5 * (mu ** 2 + logvar.exp() - logvar - 1)).reshape(mu.shape[0], -1).sum(1)
    return {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]


_GKL = [
    Sample((r(5, 3), r(5, 3)), desc="mean"),
    Sample((r(4, 2, 3), r(4, 2, 3)), {"reduction": "sum"}, desc="sum_3d"),
    Sample((r(4, 6), r(4, 6)), {"reduction": "none"}, desc="none"),
    Sample((r(1, 8), r(1, 8)), desc="batch1"),
]

# ------------------------------------------------------------------------------------- regularizers
# A list of tensors, as model.parameters() would give; the 1-d one (a bias) is not penalized.
_PARAMS = [Sample(([r(3, 4), r(4), r(2, 3, 2, 2)],), desc="weights_and_bias"), Sample(([r(5, 2)],), desc="one")]


def _torch_penalty(kind, beta=1.0):
    def penalty(m, ws):
        ws = [w for w in ws if w.ndim > 1]
        if kind == "l2":
            return sum((w ** 2).sum() for w in ws)
        if kind == "l1":
            return sum(w.abs().sum() for w in ws)
        return sum((beta * w ** 2 + w.abs()).sum() for w in ws)
    return penalty


def _nonzero(*shape):
    """Values at least 0.05 from 0, where |w| is differentiable."""
    x = r(*shape)
    return np.where(np.abs(x) < 0.05, 0.1, x)


_PARAMS_L1 = [Sample(([_nonzero(3, 4), _nonzero(4), _nonzero(2, 3, 2, 2)],), desc="weights_and_bias"),
              Sample(([_nonzero(5, 2)],), desc="one")]

SPECS = [
    OpSpec("cross_entropy", _fn("cross_entropy"), _CE, errors=_CE_ERR),
    OpSpec("nll_loss", _fn("nll_loss"), _NLL, errors=[
        ErrorCase((r(4, 5), np.array([0, -3, 1, 2])), exc=IndexOutOfRangeError, match="class index -3"),
        ErrorCase((r(4, 5), r(4, 5)), exc=DTypeError, match="use cross_entropy for probability targets")]),
    OpSpec("multi_margin_loss", _fn("multi_margin_loss"), _MM, errors=_MM_ERR),
    OpSpec("svm_loss", _fn("svm_loss"), _SVM, torch_op=_svm_via_torch),
    OpSpec("binary_cross_entropy", _fn("binary_cross_entropy"), _BCE, errors=_BCE_ERR),
    OpSpec("binary_cross_entropy_with_logits", _fn("binary_cross_entropy_with_logits"), _BCEL, errors=[
        ErrorCase((r(4, 3), r(4, 3)), {"pos_weight": pos(2)}, ShapeError, "pos_weight of shape")]),
    _regression("mse_loss", errors=_REG_ERR),
    _regression("l1_loss", errors=_REG_ERR[:1]),
    _regression("smooth_l1_loss", errors=[ErrorCase((r(3), r(3)), {"beta": -1.0}, ArgumentError, "beta")]),
    OpSpec("smooth_l1_loss_beta", _fn("smooth_l1_loss"),
           [Sample((r(3, 5), r(3, 5)), {"beta": 1 / 9}, desc="ninth"),
            Sample((r(3, 5), r(3, 5)), {"beta": 0.0, "reduction": "none"}, desc="zero")]),
    _regression("huber_loss", errors=[ErrorCase((r(3), r(3)), {"delta": 0.0}, ArgumentError, "delta")]),
    OpSpec("huber_loss_delta", _fn("huber_loss"),
           [Sample((r(3, 5) * 2, r(3, 5)), {"delta": 2.5}), Sample((r(3, 5), r(3, 5)), {"delta": 0.3})]),
    OpSpec("kl_div", _fn("kl_div"), _KL, errors=[
        ErrorCase((r(3, 4), r(3, 4)), {"reduction": "batch"}, ArgumentError, "'batchmean'")]),
    OpSpec("gaussian_kl", _fn("gaussian_kl"), _GKL, torch_op=_torch_gaussian_kl, errors=[
        ErrorCase((r(4, 3), r(4, 2)), exc=ShapeError, match=r"mu \(4, 3\) and logvar \(4, 2\)")]),
    OpSpec("l2_regularization", lambda m, ws: m.nn.functional.l2_regularization(ws), _PARAMS,
           torch_op=_torch_penalty("l2")),
    OpSpec("l1_regularization", lambda m, ws: m.nn.functional.l1_regularization(ws), _PARAMS_L1,
           torch_op=_torch_penalty("l1")),
    OpSpec("elastic_net", lambda m, ws: m.nn.functional.elastic_net(ws, beta=0.3), _PARAMS_L1,
           torch_op=_torch_penalty("en", 0.3)),
]
