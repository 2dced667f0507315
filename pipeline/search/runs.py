"""The runs `house-prices experiments` compares, as rows: DVC's experiments and commits with their
headline metrics and params, each one's public score from leaderboard.csv, its per-house errors,
and whether the workspace's outputs are stale."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipeline.common import paths

# The submission's own CV: the blend's where there is one, else the MLP's (older commits).
HEADLINE_METRICS = (paths.BLEND, paths.CV)
# The blend's per-fold scores (the blend stage writes them; kept in git, so each experiment's
# commit has its own), on all rows and without the outlier rows.
FOLDS_FILE = paths.BLEND_FOLDS
FOLD_KEYS = ("fold_rmse", "fold_rmse_no_outliers")

def _metrics(data: dict) -> dict:
    found = data.get("metrics") or {}
    for path in HEADLINE_METRICS:
        if path in found:
            return found[path].get("data") or {}
    return {}


def _flat(prefix: str, value, out: dict) -> dict:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flat(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = value
    return out


def _params(data: dict) -> dict:
    entry = (data.get("params") or {}).get("params.yaml") or {}
    return _flat("", entry.get("data") or {}, {})


def flatten_exp_show(shown: list) -> list[dict]:
    """dvc exp show --json -> one dict per baseline commit and experiment. Read from the JSON, not
    dvc.api.exp_show: that one gives params as text and integers as floats ("[256, 128]",
    fold seed 1.0) and short revisions, where the verdicts need the values and the leaderboard
    join the full commit."""
    rows = []
    for baseline in shown:
        is_commit = baseline["rev"] != "workspace"
        entries = [(baseline.get("name") or (baseline["rev"] if not is_commit
                                              else baseline["rev"][:7]), baseline["rev"],
                    baseline.get("data"), is_commit)]
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                entries.append((rev.get("name") or exp.get("name") or rev["rev"][:7], rev["rev"],
                                rev.get("data"), False))
        for name, rev, data, is_baseline in entries:
            metrics = _metrics(data or {})
            rows.append({"name": name, "rev": rev, "baseline": is_baseline,
                         "cv_rmse": metrics.get("cv_rmse"),
                         "cv_rmse_std": metrics.get("cv_rmse_std"),
                         "cv_rmse_no_outliers": metrics.get("cv_rmse_no_outliers"),
                         "params": _params(data or {})})
    return rows


def join_scores(experiments: list[dict], logged: list[dict]) -> list[dict]:
    """Attach the latest logged public score to each experiment or commit."""
    by_name, by_commit = {}, {}
    for row in logged:  # file order is time order: later rows win
        if row.get("experiment"):
            by_name[row["experiment"]] = row
        else:
            by_commit[row["commit"]] = row
    joined = []
    for exp in experiments:
        hit = by_name.get(exp["name"]) or by_commit.get(exp["rev"])
        joined.append({**exp, "public_score": (hit["public_score"] or "pending") if hit else "",
                       "submitted": hit["utc_time"] if hit else ""})
    return joined


def fold_scores(rev: str, path: str = FOLDS_FILE) -> dict | None:
    """The blend's per-fold scores of a commit or experiment (the workspace's from the file);
    None where it has none (a commit older than the file, or a run that has not finished)."""
    if rev == "workspace":
        data = Path(path).read_bytes() if Path(path).is_file() else None
    else:
        proc = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True)
        data = proc.stdout if proc.returncode == 0 else None
    try:
        scores = json.loads(data.decode("utf-8")) if data else None
        out = {key: [float(v) for v in scores[key].values()] for key in FOLD_KEYS}
        if isinstance(scores.get("house_squared_error"), list):  # newer commits
            out["houses"] = [float(v) for v in scores["house_squared_error"]]
            out["outlier_rows"] = [int(i) for i in scores.get("outlier_rows", [])]
        return out
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None



def drop_idle_workspace(rows: list[dict], stale: list[str]) -> list[dict]:
    """The workspace row only where it differs from the commit it sits on (params or scores),
    or is stale; otherwise it repeats that commit's row."""
    commit = next((r for r in rows if r.get("baseline")), None)
    workspace = next((r for r in rows if r["rev"] == "workspace"), None)
    if (commit is None or workspace is None or stale or workspace["params"] != commit["params"]
            or workspace.get("folds") != commit.get("folds")
            or workspace["cv_rmse"] != commit["cv_rmse"]):
        return rows
    return [r for r in rows if r is not workspace]


def stale_stages() -> list[str]:
    """The stages whose outputs are out of date in the workspace (params or code changed since
    its last `dvc repro`). The parameter check is left out: it is listed after any edit of
    params.yaml's bytes (a comment too) and changes no output."""
    proc = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], capture_output=True,
                          text=True)
    try:
        status = json.loads(proc.stdout) if proc.returncode == 0 else {}
    except ValueError:
        return []
    return sorted(name for name in status if name != "check_params")



def mark_stale(rows: list[dict], stale: list[str]) -> list[dict]:
    """The workspace row's name says when its scores are not those of its params and code."""
    if not stale:
        return rows
    return [{**r, "name": "workspace (stale)"} if r["rev"] == "workspace" else r for r in rows]



def rare_sales_in_workspace(path: str = paths.BLEND) -> str | None:
    """The test houses ensemble.rare_sales priced, and from which training houses (the
    workspace's blend metrics), or None when it is off or there are no metrics yet."""
    from pipeline.scoring.rare_sales import rare_sales_line

    try:
        rare = json.loads(Path(path).read_text()).get("rare_sales")
    except (OSError, ValueError, AttributeError):
        return None
    return f"workspace: {rare_sales_line(rare)}" if isinstance(rare, dict) else None
