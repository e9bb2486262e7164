"""Registry entries for shendu/ops/conv.py (being written)."""
SPECS = []
