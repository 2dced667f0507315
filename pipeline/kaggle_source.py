"""The `kaggle:<competition>` download source (filled in by the Kaggle integration)."""

from __future__ import annotations

from pipeline.download import SourceFailed
from pipeline.params import DownloadParams


def make_kaggle_fetcher(competition: str, params: DownloadParams):
    def fetch(spec, dest):
        raise SourceFailed("the Kaggle API source is not available yet; skipped")

    return fetch
