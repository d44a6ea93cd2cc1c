"""No code from files: the package never unpickles, YAML is read with safe_load, checkpoints are safetensors, and
files that try to run code are refused with one line."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import chainforget
from chainforget.cli import main
from chainforget.errors import DataError

PACKAGE = Path(chainforget.__file__).resolve().parent
FORBIDDEN = {
    r"\bimport\s+(c?pickle|dill|shelve|marshal|joblib)\b": "a pickle module",
    r"\bfrom\s+(c?pickle|dill|shelve|marshal|joblib)\s+import\b": "a pickle module",
    r"\bpickle\.loads?\(": "pickle.load",
    # yaml.load only with chainforget's SafeLoader subclass that also refuses duplicate keys (config/suite.py)
    r"\byaml\.(load(?![^\n]*Loader=_bounded_loader\(\))|unsafe_load|full_load|load_all)\(":
        "yaml.load (use yaml.safe_load)",
    r"Loader\s*=\s*yaml\.(Loader|UnsafeLoader|FullLoader)": "an unsafe YAML loader",
    r"trust_remote_code\s*[:=]\s*(bool\s*=\s*)?True": "trust_remote_code on by default",
    r"allow_pickle\s*=\s*True": "numpy pickle loading",
    r"read_pickle\(": "pandas pickle loading",
    r"(?<![\w.])(?<!def )(eval|exec)\(": "eval/exec",
}


class _Boom:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def _call(text: str, open_paren: int) -> str:
    """The argument text of the call whose '(' is at ``open_paren`` (balanced parentheses)."""
    depth = 0
    for i in range(open_paren, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_paren:i + 1]
    return text[open_paren:]


def _sources():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 40
    return files


def test_package_source_has_no_unsafe_loading():
    hits = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        for pattern, what in FORBIDDEN.items():
            for m in re.finditer(pattern, text):
                hits.append(f"{path.relative_to(PACKAGE.parent)}:{text[:m.start()].count(chr(10)) + 1}: {what}")
        for m in re.finditer(r"torch\.load\(", text):  # every torch.load must pass weights_only=True
            call = _call(text, m.end() - 1)
            if "weights_only=True" not in call:
                hits.append(f"{path.relative_to(PACKAGE.parent)}: torch.load without weights_only=True: {call}")
    assert hits == [], "\n".join(hits)


def test_the_grep_would_catch_offenders(tmp_path):
    """The patterns above are not vacuous: each flags a typical unsafe line."""
    offenders = ["import pickle", "from joblib import load", "x = pickle.loads(b)", "yaml.load(text)",
                 "yaml.full_load(f)", "yaml.load(t, Loader=yaml.Loader)", "def f(trust_remote_code=True):",
                 "trust_remote_code: bool = True", "np.load(p, allow_pickle=True)", "pd.read_pickle(p)", "eval(s)"]
    for line in offenders:
        assert any(re.search(p, line) for p in FORBIDDEN), line
    assert not any(re.search(p, "model.eval()\ndef eval(self):\nyaml.safe_load(t)\ntrust_remote_code=trust_remote_code")
                   for p in FORBIDDEN)


def test_yaml_code_tags_in_suites_and_task_files_are_refused(tmp_path):
    pwned = tmp_path / "PWNED"
    tags = [f"!!python/object/apply:os.system ['touch {pwned}']",
            f"!!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ['{pwned}']]"]
    for i, tag in enumerate(tags):
        (tmp_path / f"suite{i}.yaml").write_text(f"model: {tag}\nchains: [[bbq]]\nstrategies: [naive]\n")
        (tmp_path / f"task{i}.yaml").write_text(f"name: t\nkind: safety\nnotes: {tag}\ndata: d.jsonl\n")
        for args in (["leaderboard", "--suite", tmp_path / f"suite{i}.yaml"],
                     ["run", "--chain", tmp_path / f"task{i}.yaml"], ["run", "--config", tmp_path / f"suite{i}.yaml"]):
            res = CliRunner().invoke(main, [str(a) for a in args] + ["--out", str(tmp_path / "o")])
            assert res.exit_code == 2 and res.output.startswith("error: ") and "could not determine a constructor" \
                in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not pwned.exists() and not (tmp_path / "o").exists()


def test_weights_and_plugin_states_never_unpickle(tmp_path, tiny_model):
    """A weights file replaced by a pickle is refused without running it; a plugin state that names a class outside
    chainforget is refused too."""
    from chainforget.store import state

    model, _ = tiny_model
    pwned = tmp_path / "PWNED"
    evil = tmp_path / "weights.safetensors"
    evil.write_bytes(pickle.dumps(_Boom(pwned)))
    with pytest.raises(DataError, match="cannot read weights"):
        state.load_trainable(model, evil)
    assert not pwned.exists()
    with pytest.raises(DataError, match="outside chainforget; refusing it"):
        state._decode({"__dataclass__": "subprocess:Popen", "fields": {"args": ["touch", str(pwned)]}}, {})
    assert not pwned.exists()
    n = state.save_trainable(model, tmp_path / "ok.safetensors")  # and what we write is plain safetensors
    assert n > 0 and (tmp_path / "ok.safetensors").read_bytes()[8:9] == b"{"
