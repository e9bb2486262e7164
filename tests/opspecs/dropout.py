"""Registry entries for shendu/ops/dropout.py (being written)."""
SPECS = []
