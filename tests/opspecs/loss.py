"""Registry entries for shendu/ops/loss.py (being written)."""
SPECS = []
