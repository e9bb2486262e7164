"""Differentiable ops, one family per file (forward, backward, public wrapper and docstring together).

The public names are gathered in :mod:`shendu.functional`.
"""
