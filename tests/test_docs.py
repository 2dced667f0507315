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


def test_every_tag_the_docs_cite_names_a_commit_of_the_history():
    """Removed options are cited as "tag NAME" with the commit it points at: a clone may lack
    the tags (git clone of a branch, a mirror), but the commit is in every clone's history."""
    import subprocess

    import pytest

    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, text=True,
                             capture_output=True).stdout.strip()
    if shallow != "false":
        pytest.skip("not a full git clone: the cited commits are not here to check")
    tags = {}
    for path in [ROOT / "README.md", ROOT / "bench/README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for name in re.findall(r"`(?:git tag )?([a-z]+(?:-[a-z]+)*-\d{4}-\d{2})`", path.read_text()):
            tags.setdefault(name, set()).add(path.name)
    assert tags, "the docs cite no tag"
    text = "\n".join(p.read_text() for p in [ROOT / "bench/README.md", *(ROOT / "docs").glob("*.md")])
    for name in tags:
        cited = set(re.findall(rf"{name}`[^.;)]*?(?:commit |\()([0-9a-f]{{7,40}})", text))
        assert cited, f"tag {name} is cited without its commit"
        for commit in cited:
            kind = subprocess.run(["git", "cat-file", "-t", commit], cwd=ROOT, text=True,
                                  capture_output=True).stdout.strip()
            assert kind == "commit", f"tag {name}: {commit} is not a commit of this history"
            local = subprocess.run(["git", "rev-parse", "-q", "--verify", f"{name}^{{commit}}"],
                                   cwd=ROOT, text=True, capture_output=True).stdout.strip()
            if local:  # where the tag is here, it is that commit
                assert local.startswith(commit), f"tag {name} is {local[:7]}, the docs say {commit}"


def test_the_architecture_page_names_every_folder_and_module_of_pipeline():
    """docs/architecture.md's table is the map a newcomer reads first: it lists every folder of
    pipeline/ in the order tests/test_dag.py enforces, and names each library module."""
    from test_dag import LAYERS

    text = (ROOT / "docs/architecture.md").read_text()
    rows = re.findall(r"^\| (\d+) \| `pipeline/(\w+)/` \| (.*) \|$", text, re.M)
    assert [folder for _, folder, _ in rows] == list(LAYERS)
    for _, folder, what in rows:
        for path in sorted((ROOT / "pipeline" / folder).glob("*.py")):
            if path.stem != "__init__":
                assert f"`{path.stem}`" in what or f"`{path.stem}.py`" in what, \
                    f"docs/architecture.md: the {folder}/ row does not name {path.stem}"
