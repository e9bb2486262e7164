"""Registry entries for shendu/ops/activation.py (being written)."""
SPECS = []
