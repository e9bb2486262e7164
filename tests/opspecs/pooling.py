"""Registry entries for shendu/ops/pooling.py (being written)."""
SPECS = []
