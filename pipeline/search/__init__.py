"""Optuna sweeps over the train stage, their studies, and the reports that compare runs."""
