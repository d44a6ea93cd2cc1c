"""--launcher ray on a local Ray instance: runs land in the same runs directory as local runs would."""

import os

import yaml
from click.testing import CliRunner

from chainforget.cli import main

SUITE = {
    "model": "tiny", "chains": [["bbq"]], "strategies": ["naive", "ewc"], "seeds": [0],
    "limit_train": 9, "limit_eval": 18,
    "train": {"batch_size": 4, "micro_batch_size": 4, "max_length": 256}, "metric_options": {"n_boot": 20},
}


def test_ray_launcher_runs_the_grid(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_ADDRESS", "")
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(SUITE))
    result = CliRunner().invoke(main, ["leaderboard", "--suite", "suite.yaml", "--launcher", "ray", "--out", "runs",
                                       "-q", "--format", "csv"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("strategy,chain")
    assert sorted(line.split(",")[0] for line in lines[1:]) == ["ewc", "naive"]
    done = sorted(p.parent.name.split("_")[1] for p in (tmp_path / "runs").glob("*/DONE") if
                  not p.parent.name.startswith("_"))
    assert done == ["ewc", "naive"]
    # a local rerun finds them complete: the same directory layout as local runs
    again = CliRunner().invoke(main, ["leaderboard", "--suite", "suite.yaml", "--out", "runs", "--no-run",
                                      "--format", "csv"])
    assert again.exit_code == 0 and again.stdout == result.stdout
    assert os.environ.get("RAY_ADDRESS") == ""
