"""Batched torch training of many MLPs at once; no file I/O, imports only pipeline.common."""
