"""Automatic differentiation: Tensor, Function, the backward engine and the gradient check."""

from shendu.autograd.engine import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from shendu.autograd.function import Function
from shendu.autograd.gradcheck import grad, gradcheck
from shendu.autograd.tensor import Tensor

__all__ = ["Tensor", "Function", "grad", "gradcheck", "no_grad", "enable_grad", "set_grad_enabled",
           "is_grad_enabled"]
