"""Registry entries for shendu/ops/reduce.py (being written)."""
SPECS = []
