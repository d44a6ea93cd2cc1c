"""The third-party example as a user gets it: pip-installed (into a temporary target), found through its entry
point, and run on the tiny model through the CLI."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "chainforget-plugin-example"


def test_installed_example_plugin_runs_through_the_cli(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--disable-pip-version-check", "--target", str(site), str(src)],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-2000:]
    assert list(site.glob("chainforget_plugin_example-*.dist-info/entry_points.txt"))
    env = dict(os.environ, PYTHONPATH=str(site))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "chainforget", *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=600)

    listing = cli("list")
    assert listing.returncode == 0, listing.stderr
    provider = "chainforget-plugin-example 0.1.0"
    for kind, name in (("strategies", "l2-anchor"), ("metrics", "safety_retention"), ("tasks", "unit-convert")):
        block = listing.stdout.split(f"{kind} (")[1].split("\n\n")[0]
        assert any(line.startswith(name) and provider in line for line in block.splitlines()), (kind, block)

    run = cli("run", "--model", "tiny", "--chain", "bbq,unit-convert", "--strategy", "l2-anchor",
              "--set", "l2-anchor.strength=10", "--limit-train", "9", "--limit-eval", "18", "--batch-size", "4",
              "--micro-batch-size", "4", "--max-length", "256", "--out", "runs", "-q")
    assert run.returncode == 0, run.stderr[-3000:]
    result_file = next((tmp_path / "runs").glob("bbq-unit-convert_l2-anchor_*/result.json"))
    result = json.loads(result_file.read_text())
    assert result["spec"]["strategy"] == "l2-anchor" and result["resolved_params"]["strength"] == 10.0
    assert result["metrics"]["safety_retention"]["bbq"]["value"] is not None
