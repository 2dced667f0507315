"""Fold plans, CV metrics, member predictions, blending, the rare-sales rule and the tie rule."""
