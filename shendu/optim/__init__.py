"""Optimizers, learning-rate schedules, gradient clipping and second-order methods (``torch.optim``-shaped).

>>> import shendu
>>> from shendu import optim
>>> w = shendu.tensor([1.0, -2.0], requires_grad=True)
>>> opt = optim.Adam([w], lr=0.1)
>>> sched = optim.lr_scheduler.StepLR(opt, step_size=10)
>>> for _ in range(3):
...     opt.zero_grad()
...     w.grad = shendu.tensor([2.0, -4.0])          # normally loss.backward()
...     opt.step(); sched.step()
>>> [round(v, 4) for v in w.tolist()]
[0.7, -1.7]
"""

from shendu.optim import lr_scheduler  # noqa: F401
from shendu.optim.adaptive import Adagrad, Adam, AdamW, RMSprop
from shendu.optim.clip import clip_grad_norm_, clip_grad_value_, clip_grads_with_norm_, get_total_norm
from shendu.optim.lbfgs import LBFGS
from shendu.optim.optimizer import Optimizer, OptimizerStateError, required
from shendu.optim.second_order import GaussNewton, LevenbergMarquardt, Newton, hessian_fd, jacobian
from shendu.optim.sgd import SGD, SGDMomentumCS231n

__all__ = [
    "Optimizer", "OptimizerStateError", "required", "SGD", "SGDMomentumCS231n", "Adagrad", "RMSprop", "Adam",
    "AdamW", "LBFGS", "Newton", "GaussNewton", "LevenbergMarquardt", "hessian_fd", "jacobian",
    "clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_", "get_total_norm", "lr_scheduler",
]
