"""Registry entries for shendu/ops/indexing.py (being written)."""
SPECS = []
