"""The Kaggle API client wrapper, the submission file's contract, submit and its leaderboard log."""
