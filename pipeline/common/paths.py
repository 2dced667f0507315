"""Where the project's files live, each named once: dvc.yaml passes every path a stage reads or
writes on its command line, and these are the defaults of the stages and tools run by hand from
the repository root."""

PARAMS = "params.yaml"
BUNDLED = "data/bundled"           # the copy of the competition's files the repository ships
RAW = "data/raw"                   # the download stage's train.csv and test.csv
PROCESSED = "data/processed"       # the preprocess stage's matrices (pipeline/dataset/processed.py)
MODELS = "models"                  # the train stage's fold models
MEMBERS = "members"                # members/NAME/predictions.npz: each member's predictions
MLP_PREDICTIONS = "members/mlp/predictions.npz"
LIVE = "dvclive"                   # the train stage's learning curves
SUBMISSION = "submission.csv"
LEADERBOARD = "leaderboard.csv"    # house-prices submit's log
SWEEPS = "sweeps/results"          # sweep studies and tables
CV = "metrics/cv.json"             # the MLP's CV
CV_FOLDS = "metrics/cv_folds.json"
OOF = "metrics/oof.csv"
IMPORTANCE = "metrics/importance.csv"
BLEND = "metrics/blend.json"       # the blend's CV: the submission's
BLEND_MEMBERS = "metrics/blend_members.csv"
BLEND_FOLDS = "metrics/blend_folds.json"
BLEND_BANDS = "metrics/blend_bands.csv"
MEMBER_RESIDUALS = "metrics/member_residuals.csv"
HOUSES = "metrics/houses.csv"
