"""Registry entries for shendu/ops/linalg.py (being written)."""
SPECS = []
