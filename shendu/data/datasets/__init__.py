"""Datasets: the embedded 8x8 digits (no download)."""

from shendu.data.datasets.digits import load_digits  # noqa: F401
