"""Data: datasets and loading."""
