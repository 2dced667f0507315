"""`house-prices`: help that lists the commands, a typo that suggests the nearest, help on every
option, and the check-params stage."""

import subprocess
import sys

import pytest
import yaml

from pipeline import cli


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_help_lists_every_command_and_exits_0(flag, repo_root):
    proc = run(flag, cwd=repo_root)
    assert proc.returncode == 0 and proc.stderr == ""
    for name, (_, text) in cli.COMMANDS.items():
        assert f"  {name}" in proc.stdout and text in proc.stdout


def test_no_command_is_usage_on_stderr_with_exit_2(repo_root):
    proc = run(cwd=repo_root)
    assert proc.returncode == 2 and "usage: house-prices COMMAND" in proc.stderr


@pytest.mark.parametrize(("typo", "nearest"), [("trian", "train"), ("sumbit", "submit"),
                                               ("experiment", "experiments")])
def test_typo_says_unknown_and_suggests_the_nearest(typo, nearest, repo_root):
    proc = run(typo, cwd=repo_root)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"house-prices: unknown command '{typo}'; did you mean "
                                   f"'{nearest}'? (house-prices --help lists them)")


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_each_command_has_its_name_and_help_on_every_option(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: house-prices {command}")
    lines = out.splitlines()
    options = [i for i, line in enumerate(lines) if line.strip().startswith(("--", "-m"))
               and not line.strip().startswith("--help")]
    assert options, out
    for i in options:  # help text after the flag, or on the next line when the flag is long
        flag, _, text = lines[i].strip().partition("  ")
        following = lines[i + 1].strip() if i + 1 < len(lines) else ""
        assert text.strip() or (following and not following.startswith("-")), \
            f"{command}: {flag} has no help"


def test_check_params_names_the_bad_key(tmp_path, repo_root):
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["train"]["activation"] = "swish"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    stamp = tmp_path / "params.valid"
    proc = run("check-params", "--params", str(params), "--stamp", str(stamp), cwd=repo_root)
    assert proc.returncode == 1 and not stamp.exists()
    assert proc.stderr.strip() == ("error: params.yaml: train.activation must be one of relu, "
                                   "gelu, tanh, silu, got 'swish'; fix it in params.yaml or with "
                                   "-S train.activation=... (a failed `dvc exp run -S` leaves its "
                                   "value there: `git checkout params.yaml` restores it)")
    proc = run("check-params", "--params", str(repo_root / "params.yaml"), "--stamp", str(stamp),
               cwd=repo_root)
    assert proc.returncode == 0 and stamp.read_text() == "params.yaml is valid\n"
