"""Registry entries for shendu/ops/normalization.py (being written)."""
SPECS = []
