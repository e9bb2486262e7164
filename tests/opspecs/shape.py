"""Registry entries for shendu/ops/shape.py (being written)."""
SPECS = []
