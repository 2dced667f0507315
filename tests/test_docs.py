"""The code in the docs runs as written."""

import re

from conftest import ROOT


def test_the_from_python_guide_runs(monkeypatch, capsys):
    """docs/python.md's block, run from the repository root as the guide says; the one change:
    a few epochs instead of train.max_epochs, so the test is quick."""
    text = (ROOT / "docs/python.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert "lr=0.001)" in code
    code = code.replace("lr=0.001)", "lr=0.001, max_epochs=3)")
    monkeypatch.chdir(ROOT)
    exec(compile(code, "docs/python.md", "exec"), {})  # as a notebook cell runs it
    out = capsys.readouterr().out
    assert re.fullmatch(r"CV log-RMSE 0\.\d{4}, without the two partial sales 0\.\d{4}\n",
                        out), out
