"""Reproducible pipeline for Kaggle's House Prices competition (see README.md)."""

from pipeline.common.portable import pin_kernels

pin_kernels()  # before numpy, scipy, torch or LightGBM load: the same bits on every x86-64 CPU
