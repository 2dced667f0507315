"""dvc.yaml's deps are the code each stage runs: every pipeline module a stage's command imports,
directly or through others, is listed, and nothing else, so editing any of them re-runs exactly
the stages that run it (and `dvc repro` never says "up to date" over stale outputs).

Imports are read from the source (top-level and inside functions). The families' modules are
loaded by name rather than imported: the member stage of family NAME (`python -m pipeline.stages.member
NAME`) runs pipeline/members/NAME.py and what it imports, and no other family's module. Every
stage's params are the ones it reads, and every file it writes is on its command line.
"""

import ast
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from pipeline.members import families


def module_path(name: str) -> Path:
    path = ROOT / (name.replace(".", "/") + ".py")
    return path if path.is_file() else ROOT / name.replace(".", "/") / "__init__.py"


def _runtime_nodes(tree: ast.AST):
    """Every node of the source but the bodies of `if TYPE_CHECKING:` (annotations only)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                yield child
                yield from _runtime_nodes(child)
            continue
        yield node
        yield from _runtime_nodes(node)


def imported_modules(path: Path) -> set[str]:
    """pipeline.* modules `path` imports anywhere in its source (top level or inside functions),
    except under `if TYPE_CHECKING:`, which never runs."""
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
            found.add(node.module)
            for alias in node.names:  # `from pipeline import compare` imports a module
                if module_path(f"{node.module}.{alias.name}").is_file():
                    found.add(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pipeline")}
    return found


def closure(module: str) -> set[str]:
    """The module and every pipeline module it imports, transitively, as repository paths."""
    seen, todo = set(), [module, "pipeline"]  # any pipeline module runs pipeline/__init__.py
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parent = name.rsplit(".", 1)[0]
        if parent != name:
            todo.append(parent)  # importing pipeline.members.x runs pipeline/members/__init__.py
        todo += sorted(imported_modules(module_path(name)))
    return {str(module_path(n).relative_to(ROOT)) for n in seen
            if module_path(n).is_file() and not docstring_only(module_path(n))}


def docstring_only(path: Path) -> bool:
    """A folder's __init__.py that only says what the folder is for runs nothing a stage's
    outputs could depend on, so no stage lists it."""
    body = ast.parse(path.read_text()).body
    return len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)


def as_deps(files: set[str]) -> set[str]:
    """Module paths as dvc.yaml lists them: a folder of pipeline/ whose every module the stage
    runs is one dep (the outermost such folder), the others one file each."""
    deps = set(files)
    folders = sorted({p.parent for p in map(Path, files) if p.parent != Path("pipeline")},
                     key=lambda f: len(f.parts))
    for folder in folders:
        inside = {str(p.relative_to(ROOT)) for p in (ROOT / folder).rglob("*.py")
                  if not docstring_only(p)}
        if inside <= files and not any(str(folder).startswith(d + "/") for d in deps):
            deps = (deps - inside) | {str(folder)}
    return deps


def stage_code(name: str, stage: dict) -> tuple[set[str], set[str]]:
    """(the code the stage's command runs, the pipeline deps dvc.yaml lists), both as deps."""
    module, *args = stage["cmd"].split("python -m ", 1)[1].split()
    expected = closure(module)
    if module == "pipeline.stages.member":  # its family's module, loaded by name
        expected |= closure(f"pipeline.members.{args[0]}")
    if module == "pipeline.stages.check_params":  # checks every family's settings
        expected |= set().union(*(closure(f"pipeline.members.{f}") for f in families()))
    listed = {d for d in stage["deps"] if d.startswith("pipeline/")}
    return as_deps(expected), listed


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_family_has_its_member_stage():
    members = {n for n, s in STAGES.items() if s["cmd"].startswith("python -m pipeline.stages.member ")}
    assert members == {f"member_{f}" for f in families()}
    for family in families():
        assert STAGES[f"member_{family}"]["cmd"].split()[3] == family


def test_the_lock_records_only_the_stages_dvc_yaml_has():
    """DVC rewrites a stage's entry when it runs and never drops one whose stage is gone; stale
    entries only make every `dvc repro` re-read and re-write a longer dvc.lock after each stage
    (ruamel.yaml's round trip, ~0.3 s a stage on the 2-core machine at twice today's length)."""
    locked = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    assert set(locked) == set(STAGES), f"dvc.lock has stages dvc.yaml lacks: " \
                                       f"{sorted(set(locked) - set(STAGES))} (delete them)"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_each_stage_depends_on_exactly_the_code_it_runs(name):
    stage = STAGES[name].get("do", STAGES[name])
    expected, listed = stage_code(name, stage)
    assert not expected - listed, f"dvc.yaml stage {name} misses deps {sorted(expected - listed)}"
    assert not listed - expected, f"dvc.yaml stage {name} lists deps it does not run: " \
                                  f"{sorted(listed - expected)}"


def test_no_module_imports_a_stage_and_there_are_no_cycles():
    """Stages are leaves: library modules and bench/ scripts never import one (so a stage's edit
    re-runs only itself), and the import graph has no cycle."""
    stages = {s["cmd"].split("python -m ", 1)[1].split()[0]
              for s in (v.get("do", v) for v in STAGES.values())}
    modules = {str(p.relative_to(ROOT))[:-3].replace("/", ".").removesuffix(".__init__")
               for p in (ROOT / "pipeline").rglob("*.py")}
    graph = {m: imported_modules(module_path(m)) & modules for m in modules}
    for module, imports in graph.items():
        assert not (imports & stages) - {module}, f"{module} imports stage(s) {imports & stages}"
    for script in sorted((ROOT / "bench").glob("*.py")):  # bench/ uses the library, not stages
        imports = imported_modules(script) & stages
        assert not imports, f"bench/{script.name} imports stage(s) {sorted(imports)}"
    state: dict[str, int] = {}

    def visit(module, path):
        if state.get(module) == 1:
            raise AssertionError(f"import cycle: {' -> '.join([*path, module])}")
        if state.get(module) == 2:
            return
        state[module] = 1
        for dep in sorted(graph[module] - {"pipeline"}):
            visit(dep, [*path, module])
        state[module] = 2

    for module in sorted(modules):
        visit(module, [])


def _outputs(stage: dict) -> list[str]:
    paths = []
    for key in ("outs", "metrics", "plots"):
        for entry in stage.get(key) or []:
            paths.append(next(iter(entry)) if isinstance(entry, dict) else entry)
    return paths


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_file_a_stage_writes_is_on_its_command_line(name):
    """dvc.yaml is the whole plan: no output comes from an argparse default or is derived from
    another path inside the code (a directory on the command line covers the files under it)."""
    stage = STAGES[name].get("do", STAGES[name])
    words = stage["cmd"].replace("${item}", "ITEM").split()
    for path in _outputs(stage):
        path = path.replace("${item}", "ITEM")
        assert any(path == w or path.startswith(w.rstrip("/") + "/") for w in words), \
            f"dvc.yaml stage {name}: {path} is not on its command line"


def test_every_stage_cli_writes_where_its_command_line_says():
    """The paths on the command lines are the ones the stages take (argparse knows each flag)."""
    import importlib

    for entry in STAGES.values():
        stage = entry.get("do", entry)
        module, *args = stage["cmd"].split("python -m ", 1)[1].split()
        parser_source = (ROOT / (module.replace(".", "/") + ".py")).read_text()
        for flag in (a for a in args if a.startswith("--")):
            assert f'"{flag}"' in parser_source, f"{module} has no option {flag}"
        importlib.import_module(module)


# Params a stage declares but this small run does not read, and why.
NOT_READ_HERE = {
    # the small run's only source is data/bundled; these are read when a Kaggle source is tried
    "download": {"kaggle.competition", "kaggle.retries", "kaggle.retry_backoff_s",
                 "kaggle.timeout_s"},
}


def _covers(declared: str, read: str) -> bool:
    return read == declared or read.startswith(declared + ".")


@pytest.mark.parametrize("name", sorted(STAGES))
def test_each_stage_declares_exactly_the_params_it_reads(name, small_run):
    """Every params.yaml key a stage's code reads is in its dvc.yaml `params`, and every entry
    there is read (a section listed whole: some key of it), so DVC re-runs a stage exactly when
    a value it uses changes. check_params validates every section, so it declares them all."""
    _, reads = small_run
    declared = STAGES[name].get("params", [])
    if name == "check_params":
        assert set(declared) == {"download", "preprocess", "train", "ensemble", "kaggle",
                                 "members"}
        return
    read = reads[name]
    undeclared = sorted(r for r in read if not any(_covers(d, r) for d in declared))
    assert not undeclared, f"dvc.yaml stage {name} reads undeclared params {undeclared}"
    unread = sorted(d for d in declared if not any(_covers(d, r) for r in read)
                    and d not in NOT_READ_HERE.get(name, ()))
    assert not unread, f"dvc.yaml stage {name} declares params it does not read: {unread}"


# pipeline/'s folders from the bottom up: a module imports only from its own folder and the
# folders before it (docs/architecture.md); the engine, the batched trainer, only from common.
LAYERS = ("common", "dataset", "config", "engine", "scoring", "members", "kaggle", "search",
          "stages")
ONLY_FROM = {"engine": {"common", "engine"}}


def test_folders_import_only_downwards():
    modules = {str(p.relative_to(ROOT))[:-3].replace("/", ".").removesuffix(".__init__")
               for p in (ROOT / "pipeline").rglob("*.py")}
    folders = {m.split(".")[1] for m in modules if m.count(".") >= 2}
    assert folders == set(LAYERS), f"a folder of pipeline/ is not in LAYERS: {folders ^ set(LAYERS)}"
    for module in sorted(modules):
        parts = module.split(".")
        if len(parts) < 3:  # pipeline/__init__.py and pipeline/cli.py sit on top
            continue
        rank = LAYERS.index(parts[1])
        allowed = ONLY_FROM.get(parts[1], set(LAYERS[:rank + 1]))
        for imported in imported_modules(module_path(module)):
            target = imported.split(".")
            if len(target) < 3:  # `from pipeline.FOLDER import MODULE` lists the module too
                continue
            assert target[1] in allowed, (f"{module} imports {imported}: {parts[1]}/ may import "
                                          f"only from {', '.join(sorted(allowed))}")
