"""Reproducible pipeline for Kaggle's House Prices competition (see README.md)."""
