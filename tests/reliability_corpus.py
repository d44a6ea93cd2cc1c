"""The corpus of hostile inputs for test_reliability_inputs.py (no tests here).

Each case writes what it needs under a scratch folder and returns the CLI arguments and a piece of the one-line error
it must produce. Hand-written cases reproduce every escape found by review; generated variants multiply them over the
kinds of file (suite, run config, task YAML, task TOML, data rows), wrong types, encodings, nesting depths and sizes.
A case may also damage a copy of a complete run (``Ctx.damaged_copy``): commands reading it must refuse it.
"""

from __future__ import annotations

import gzip
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml
from reliability_support import TINY

ROWS = [{"pid": f"p{i}", "text": f"post {i}", "label": i % 2, "community": "ab"[i % 2]} for i in range(8)]
TASK = {"name": "hostile", "kind": "safety", "prompt_template": "Post: {text}\nAnswer:", "options": ["No", "Yes"],
        "data": "rows.jsonl", "columns": {"id": "pid", "gold": "label", "group": "community"}}
RUN = {"chain": "bbq,gsm8k", "model": "tiny", **TINY}
SUITE = {"model": "tiny", "chains": [["bbq", "gsm8k"]], "strategies": ["naive"], "seeds": [0], **TINY}


@dataclass
class Ctx:
    """Where a case writes (``work``), the --out holding a complete run (``out``) and that run (``run``)."""

    work: Path
    out: Path
    run: Path

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def rows(self, rows=ROWS, name: str = "rows.jsonl") -> Path:
        return self.write(name, "".join(json.dumps(r) + "\n" for r in rows))

    def task(self, text: str | bytes | None = None, suffix: str = "yaml", **changes) -> Path:
        """A task file over good rows: ``text`` as given, or TASK with ``changes`` (None deletes a key)."""
        self.rows()
        if text is None:
            cfg = {**TASK, **changes}
            cfg = {k: v for k, v in cfg.items() if v is not None}
            text = yaml.safe_dump(cfg, sort_keys=False)
        return self.write(f"task.{suffix}", text)

    def damaged_copy(self) -> tuple[Path, Path]:
        """A copy of the --out with the complete run: (copy of --out, copy of the run)."""
        out = self.work / "copy"
        shutil.copytree(self.out, out, ignore=shutil.ignore_patterns("*.lock"))
        return out, out / self.run.name


@dataclass
class Case:
    id: str
    build: Callable[[Ctx], list]  # -> CLI arguments (the --out to watch is added by the caller for run/leaderboard)
    expect: str  # a piece of the one-line error
    out: str = "shared"  # "shared": the --out with the complete run; "copy": the case made its own damaged copy


def _yaml_dump(obj) -> str:
    return yaml.safe_dump(obj, sort_keys=False)


# ------------------------------------------------------------------------------------------------ hostile YAML
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(9))


def _deep(depth: int, flow: str) -> str:
    return "[" * depth + "]" * depth if flow == "list" else "{a: " * depth + "1" + "}" * depth


def _yaml_kinds():
    """(kind, how to pass a YAML text of that kind) for suites, run configs and task files."""
    return [
        ("suite", lambda c, text: ["leaderboard", "--suite", c.write("s.yaml", text), "-q"]),
        ("config", lambda c, text: ["run", "--config", c.write("r.yaml", text), "-q"]),
        ("task", lambda c, text: ["run", "--chain", c.task(text), "--model", "tiny", "-q"]),
    ]


def hostile_yaml_cases() -> list[Case]:
    cases = []
    for kind, make in _yaml_kinds():
        prefix = {"suite": _yaml_dump(SUITE), "config": _yaml_dump(RUN), "task": _yaml_dump(TASK)}[kind]
        cases += [
            Case(f"{kind}-alias-bomb", lambda c, m=make: m(c, BOMB), "aliases (*a) are not allowed"),
            Case(f"{kind}-alias-small", lambda c, m=make, p=prefix: m(c, p + "notes: &n hello\nextra: *n\n"),
                 "are not allowed"),
            Case(f"{kind}-list-key", lambda c, m=make, p=prefix: m(c, p + "? [a, b]\n: 1\n"),
                 "a list cannot be a mapping key"),
            Case(f"{kind}-mapping-key", lambda c, m=make, p=prefix: m(c, p + "? {a: 1}\n: 1\n"),
                 "a mapping cannot be a mapping key"),
            Case(f"{kind}-latin1", lambda c, m=make, p=prefix: m(c, (p + "description: caf\xe9\n").encode("latin-1")),
                 "not UTF-8 text"),
            Case(f"{kind}-utf16", lambda c, m=make, p=prefix: m(c, p.encode("utf-16")), "not UTF-8 text"),
            Case(f"{kind}-huge", lambda c, m=make, p=prefix: m(c, p + "notes: " + "x" * (5 << 20) + "\n"),
                 "MiB"),
            Case(f"{kind}-duplicate-key", lambda c, m=make, p=prefix, k=kind: m(
                c, p + ("kind: again\n" if k == "task" else "model: again\n")), "duplicate key"),
        ]
        for depth in (40, 1000, 100_000):
            for flow in ("list", "map"):
                cases.append(Case(f"{kind}-deep-{flow}-{depth}",
                                  lambda c, m=make, p=prefix, d=depth, f=flow: m(c, p + "notes: " + _deep(d, f) + "\n"),
                                  "nested deeper than 32 levels"))
    return cases


def toml_cases() -> list[Case]:
    def toml(text):
        return lambda c: ["run", "--chain", c.task(text, suffix="toml"), "--model", "tiny", "-q"]

    good = ('name = "hostile"\nkind = "safety"\nprompt_template = "Post: {text}"\noptions = ["No", "Yes"]\n'
            'data = "rows.jsonl"\n')
    return [
        Case("toml-deep-array", toml(good + "notes = " + "[" * 100_000 + "]" * 100_000 + "\n"),
             "nested too deeply"),
        Case("toml-deep-40", toml(good + "notes = " + "[" * 40 + "]" * 40 + "\n"), "nested deeper than 32 levels"),
        Case("toml-latin1", toml((good + 'notes = "caf\xe9"\n').encode("latin-1")), "not UTF-8 text"),
        Case("toml-broken", toml(good + "[columns\n"), "invalid TOML"),
        Case("toml-options-string", toml(good.replace('options = ["No", "Yes"]', 'options = "NoYes"')),
             "task.toml line 4: options must be a list of at least two option texts"),
        Case("toml-columns-gold-list", toml(good + '[columns]\nid = "pid"\ngold = ["x"]\n'),
             "task.toml line 8: columns.gold must be a column name"),
    ]


def data_row_cases() -> list[Case]:
    def rows(lines: list[str] | bytes):
        def build(c):
            task = c.task()
            if isinstance(lines, bytes):
                c.write("rows.jsonl", lines)
            else:
                c.write("rows.jsonl", "".join(line + "\n" for line in lines))
            return ["run", "--chain", task, "--model", "tiny", "-q"]
        return build

    good = [json.dumps(r) for r in ROWS]
    return [
        Case("jsonl-deep-row", rows(good[:3] + ['{"pid": "x", "text": ' + "[" * 100_000 + "]" * 100_000 + "}"]),
             "line 4: JSON nested too deeply"),
        Case("jsonl-latin1", rows(("\n".join(good) + '\n{"pid": "caf\xe9"}\n').encode("latin-1")), "not UTF-8"),
        Case("jsonl-group-mapping", rows(good[:2] + [json.dumps({**ROWS[2], "community": {"a": 1}})]),
             "must be text or a number, got a mapping"),
        Case("jsonl-group-list", rows(good[:2] + [json.dumps({**ROWS[2], "community": ["a"]})]),
             "must be text or a number, got a list"),
        Case("jsonl-id-mapping", rows(good[:2] + [json.dumps({**ROWS[2], "pid": {"x": 1}})]), "got a mapping"),
    ]


# ---------------------------------------------------------------------------------------------- task-file types
TASK_TYPE_CASES = {  # field change -> expected piece (hand-written and generated variants)
    "option_prefix=5": ({"option_prefix": 5}, "option_prefix must be text"),
    "options=5": ({"options": 5}, "options must be a list of at least two option texts"),
    "options=NoYes": ({"options": "NoYes"}, "options must be a list of at least two option texts"),
    "options=[one]": ({"options": ["one"]}, "options must be a list of at least two"),
    "options=mapping": ({"options": {"a": 1}}, "options must be a list"),
    "columns.gold=[x]": ({"columns": {**TASK["columns"], "gold": ["x"]}}, "columns.gold must be a column name"),
    "columns.meta=5": ({"columns": {**TASK["columns"], "meta": 5}}, "columns.meta must be a list of column names"),
    "columns.group=mapping": ({"columns": {**TASK["columns"], "group": {"a": 1}}}, "columns.group must be a column"),
    "columns=list": ({"columns": ["pid"]}, "columns must be a mapping"),
    "template={0}": ({"prompt_template": "Post: {0}"}, "prompt_template field {0} is not a column name"),
    "template={text": ({"prompt_template": "Post: {text"}, "prompt_template is not a valid template"),
    "template=5": ({"prompt_template": 5}, "prompt_template must be text"),
    "template=attr": ({"prompt_template": "{text.__class__}"}, "is not a column name"),
    "template=spec": ({"prompt_template": "{text:d}"}, "is not a column name"),
    "generation=abc": ({"generation": "abc"}, "generation must be a mapping"),
    "generation.unknown": ({"generation": {"max_tokens": 5}}, "unknown key generation."),
    "generation.max_new_tokens": ({"generation": {"max_new_tokens": 10**9}}, "max_new_tokens must be an integer"),
    "generation.pattern": ({"generation": {"answer_pattern": "(unclosed"}}, "not a valid regular expression"),
    "split.eval_fraction=half": ({"split": {"eval_fraction": "half"}}, "split.eval_fraction must be a number"),
    "split.eval_fraction=2": ({"split": {"eval_fraction": 2}}, "split.eval_fraction must be a number"),
    "split.unit=5": ({"split": {"unit": 5}}, "split.unit must be text"),
    "split.seed=-1": ({"split": {"seed": -1}}, "split.seed must be an integer"),
    "split.eval_only=yes": ({"split": {"eval_only": "yes"}}, "split.eval_only must be true or false"),
    "groups=mapping": ({"groups": {"a": 1}}, "groups must be a list of group names"),
    "groups=[]": ({"groups": []}, "groups must be a list of group names"),
    "metrics=5": ({"metrics": 5}, "metrics must be a metric name or a list"),
    "group_fields=x": ({"group_fields": "group"}, "group_fields must be a list"),
    "name=list": ({"name": ["a"]}, "name must be text"),
    "kind=5": ({"kind": 5}, "kind must be text"),
    "description=mapping": ({"description": {"a": 1}}, "description must be text"),
    "notes=5": ({"notes": 5}, "notes must be text"),
}
for _field in ("description", "source", "license", "notes", "primary_metric", "format"):
    for _label, _value in (("int", 7), ("list", ["a"]), ("bool", True), ("mapping", {"a": "b"})):
        TASK_TYPE_CASES[f"{_field}={_label}"] = ({_field: _value}, f"{_field} must be")


def task_type_cases() -> list[Case]:
    def literal(text):
        return lambda c: ["run", "--chain", c.task(text), "--model", "tiny", "-q"]

    head = "name: lines\nkind: safety\ndata: rows.jsonl\n"
    return [
        Case("task-yaml-line-options", literal(head + "options: NoYes\n"), "task.yaml line 4: options must be a list"),
        Case("task-yaml-line-booleans", literal(head + "options: [No, Yes]\n"),
             "task.yaml line 4: options must be a list of at least two option texts, e.g. [' No', ' Yes'], got "
             "[False, True] (YAML reads unquoted yes/no/true/false as booleans: quote them)"),
        Case("task-yaml-line-columns", literal(head + "options: ['a', 'b']\ncolumns:\n  id: pid\n  meta: 5\n"),
             "task.yaml line 7: columns.meta must be a list of column names"),
    ] + [Case(f"task-{name}", lambda c, ch=change: ["run", "--chain", c.task(**ch), "--model", "tiny", "-q"], exp)
            for name, (change, exp) in TASK_TYPE_CASES.items()]


# ------------------------------------------------------------------------------------------- silent misreadings
def misreading_cases() -> list[Case]:
    def suite(**changes):
        return lambda c: ["leaderboard", "--suite", c.write("s.yaml", _yaml_dump({**SUITE, **changes})), "-q"]

    def config(**changes):
        return lambda c: ["run", "--config", c.write("r.yaml", _yaml_dump({**RUN, **changes})), "-q"]

    cases = [Case(f"suite-sharpness-{v!r}", suite(sharpness=v), "sharpness must be true or false")
             for v in ("no", [], "yes", 1, "false")]
    cases += [Case(f"config-sharpness-{v!r}", config(sharpness=v), "sharpness must be true or false")
              for v in ("no", [])]

    def shadow(c):
        task = c.task(name="bbq")
        return ["run", "--chain", "gsm8k", "--eval-tasks", task, "--model", "tiny", "-q"]

    cases.append(Case("task-file-shadows-bbq", shadow, "which is a registered task; give the file's task another"))
    return cases


# -------------------------------------------------------------------------------------------- corrupt state
def _delete_records(c):
    out, run = c.damaged_copy()
    (run / "records" / "step-1.jsonl.gz").unlink()
    return out, run


def _marker_without_hash(c):
    out, run = c.damaged_copy()
    result = json.loads((run / "result.json").read_text())
    result["score_matrix"][0][0] = 0.99
    (run / "result.json").write_text(json.dumps(result))
    (run / "DONE").write_text("{}")
    return out, run


def _corrupt_result(c):
    out, run = c.damaged_copy()
    (run / "result.json").write_text("{not json")
    return out, run


def state_cases() -> list[Case]:
    def on(damage, command):
        def build(c):
            out, run = damage(c)
            return {"metrics": ["metrics", run], "compare": ["compare", run, run],
                    "plot": ["plot", run, "--out", c.work / "figs"]}[command]
        return build

    cases = []
    for command in ("metrics", "compare", "plot"):
        cases.append(Case(f"{command}-missing-records", on(_delete_records, command),
                          "records/step-1.jsonl.gz is missing, but the run claims 3 score-matrix rows", out="copy"))
        cases.append(Case(f"{command}-marker-without-hash", on(_marker_without_hash, command),
                          "holds no checksums, so nothing vouches for its result", out="copy"))
    cases.append(Case("metrics-corrupt-result", on(_corrupt_result, "metrics"), "does not match its completion marker",
                      out="copy"))

    def state_json_empty(c):
        out, run = c.damaged_copy()
        (run / "checkpoints" / "step-1" / "state.json").write_text("{}")
        return ["sharpness", run, "--max-iter", "1"]

    cases.append(Case("sharpness-state-json-empty", state_json_empty, "state.json does not match its checksum",
                      out="copy"))

    def flipped_prefix(c):
        out, run = c.damaged_copy()
        (weights,) = sorted(out.glob("_prefix/s1-*/weights.safetensors"))
        data = bytearray(weights.read_bytes())
        data[-5] ^= 0xFF
        weights.write_bytes(bytes(data))
        return ["sharpness", run, "--max-iter", "1"]

    cases.append(Case("sharpness-flipped-prefix-weights", flipped_prefix,
                      "weights.safetensors does not match its checksum", out="copy"))
    return cases


# ------------------------------------------------------------------------------- trust nothing unverified
def _reseal(run: Path) -> None:
    """Recompute the run's DONE marker over its edited files: what a deliberate editor does. The checksums then
    match, so only the reader's own checks (identity, bounds, types) stand between the edit and a table."""
    from chainforget.store.markers import write_marker

    names = ["result.json", *sorted(f"records/{p.name}" for p in (run / "records").glob("step-*.jsonl.gz"))]
    write_marker(run, names)


def _edit_records(edit, step: int = 1):
    """A copy of the run whose records of ``step`` went through ``edit(lines) -> bytes``, its marker recomputed."""
    def damage(c):
        out, run = c.damaged_copy()
        path = run / "records" / f"step-{step}.jsonl.gz"
        lines = [json.loads(x) for x in gzip.decompress(path.read_bytes()).splitlines() if x.strip()]
        data = edit(lines)
        with gzip.open(path, "wb", compresslevel=1) as gz:  # chunk by chunk: a bomb is never whole in memory
            for chunk in ([data] if isinstance(data, bytes) else data):
                gz.write(chunk)
        _reseal(run)
        return out, run
    return damage


def _lines(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _first_mc(rows):
    return next(i for i, r in enumerate(rows) if r.get("option_logliks"))


def _scores_text(rows):
    rows[0]["scores"] = {k: "x" for k in rows[0]["scores"]}
    return _lines(rows)


def _one_loglik(rows):
    rows[_first_mc(rows)]["option_logliks"] = [1]
    return _lines(rows)


def _infinity(rows):
    rows[_first_mc(rows)]["option_logliks"][0] = float("inf")  # json.dumps writes the token Infinity
    return _lines(rows)


def _flip_scores(rows):
    """Well-typed records that no longer give result.json's score matrix (each bbq answer scored the other way)."""
    for r in rows:
        if r["task"] == "bbq":
            r["scores"] = {k: 1.0 - v for k, v in r["scores"].items()}
            r["correct"] = r["scores"]["acc"]
    return _lines(rows)


def _long_line(rows):
    return _lines(rows) + b"0" * (2 << 20)  # one 2 MiB line (past the 1 MiB a record line may hold)


def _bomb(rows):
    """Valid record lines repeated until the file inflates past the 256 MiB one records file may hold (the
    compressed file is about 1 MB)."""
    block = _lines(rows) * 64
    return (block for _ in range((257 << 20) // len(block) + 1))


def _result_nan(c):
    out, run = c.damaged_copy()
    text = (run / "result.json").read_text()
    result = json.loads(text)
    result["score_matrix"][1][0] = float("nan")  # json.dumps writes the token NaN
    (run / "result.json").write_text(json.dumps(result))
    _reseal(run)
    return out, run


def _result_huge(c):
    out, run = c.damaged_copy()
    result = json.loads((run / "result.json").read_text())
    result["notes"] = "x" * (65 << 20)
    (run / "result.json").write_text(json.dumps(result))
    _reseal(run)
    return out, run


def _copied_folder(c):
    """naive's finished run copied over the run id an EWC run of the same config would have (a hand copy, or two
    --outs merged): (copy of --out, the EWC-named folder, the naive run, the EWC run config)."""
    from chainforget.benchmark.plan import resolve_run
    from chainforget.config.spec import RunSpec

    out, run = c.damaged_copy()
    spec = json.loads((run / "spec.json").read_text())
    ewc = {**spec, "strategy": "ewc", "strategy_params": {"fisher_samples": 2}}
    ewc_dir = out / resolve_run(RunSpec.from_dict(ewc)).spec.run_id()
    shutil.copytree(run, ewc_dir)
    return out, ewc_dir, run, c.write("ewc.yaml", _yaml_dump(ewc))


IDENTITY = "holds the result of run"


def trust_cases() -> list[Case]:
    def on(damage, command):
        def build(c):
            out, run = damage(c)
            return {"metrics": ["metrics", run], "compare": ["compare", run, run], "findings": ["findings", out],
                    "plot": ["plot", run, "--out", c.work / "figs"]}[command]
        return build

    cases = []
    for command in ("metrics", "compare", "findings"):
        for name, damage, expect in (
                ("scores-text", _edit_records(_scores_text), "record field 'scores' must be an object of finite"),
                ("one-loglik-of-three", _edit_records(_one_loglik), "option_logliks holds 1 options but "
                                                                    "option_lengths is"),
                ("records-infinity", _edit_records(_infinity), "non-finite number Infinity"),
                ("records-long-line", _edit_records(_long_line), "longer than 1024 KiB"),
                ("result-nan", _result_nan, "non-finite number NaN"),
                ("result-65mib", _result_huge, "more than the 64 MiB a result of chainforget holds")):
            cases.append(Case(f"{command}-{name}", on(damage, command), expect, out="copy"))
    for command in ("compare", "findings"):  # `metrics` shows such a run's difference: that is its job (--check)
        cases.append(Case(f"{command}-records-disagree-with-result", on(_edit_records(_flip_scores), command),
                          "its records disagree with its result.json (score_matrix[1][0]", out="copy"))
    cases.append(Case("findings-records-bomb", on(_edit_records(_bomb), "findings"),
                      "inflates to more than 256 MiB of records", out="copy"))

    def copied(command):
        def build(c):
            out, ewc_dir, run, cfg = _copied_folder(c)
            return {"run": ["run", "--config", cfg, "-q"], "compare": ["compare", ewc_dir, run],
                    "findings": ["findings", ewc_dir], "metrics": ["metrics", ewc_dir],
                    "sharpness": ["sharpness", ewc_dir, "--max-iter", "1"]}[command]
        return build

    for command in ("run", "compare", "findings", "metrics", "sharpness"):
        cases.append(Case(f"{command}-copied-run-folder", copied(command), IDENTITY, out="copy"))

    def spec_edited(c):
        out, run = c.damaged_copy()
        spec = json.loads((run / "spec.json").read_text())
        (run / "spec.json").write_text(json.dumps({**spec, "strategy": "ewc"}))
        return ["compare", run, run]

    cases.append(Case("compare-spec-json-of-another-run", spec_edited, "spec.json and result.json describe "
                                                                       "different runs", out="copy"))

    def derived(filter_yaml):
        return lambda c: ["run", "--chain", c.write("d.yaml", f"name: bbq-x\nbase: bbq\nfilter:\n{filter_yaml}"),
                          "--model", "tiny", "--dry-run", "-q"]

    cases += [
        Case("filter-group-contains-5", derived("  group: {contains: 5}\n"),
             "d.yaml line 4: filter.group: group is text, so contains needs text"),
        Case("filter-group-contains-list", derived("  group: {contains: [5]}\n"),
             "d.yaml line 4: filter.group: contains needs one value"),
        Case("filter-subgroup-contains-5", derived("  subgroup: {contains: 5}\n"), "subgroup is text"),
        Case("filter-meta-contains-5", derived("  meta.category: {contains: 5}\n"),
             "d.yaml line 4: filter.meta.category: the field holds text"),
    ]

    def suite(extra, **changes):
        return lambda c: ["leaderboard", "--suite", c.write("s.yaml", _yaml_dump({**SUITE, **changes})), *extra]

    grid = {"seeds": list(range(20000)), "learning_rate": [i * 1e-5 for i in range(1, 51)]}
    size = "the suite expands to 1,000,000 runs (20,000 seeds x 50 learning rates), more than the 10,000 allowed"
    nboot = "n_boot must be an integer in [1, 1000000]"
    cases += [
        Case("suite-grid-1e6-dry-run", suite(["--dry-run"], **grid), size),
        Case("suite-grid-1e6-no-run", suite(["--no-run"], **grid), size),
        Case("suite-grid-1e6-run", suite(["-q"], **grid), "pass --max-runs 1000000"),
        Case("suite-grid-over-max-runs", suite(["--max-runs", "1"], seeds=[0, 1]),
             "the suite expands to 2 runs (2 seeds), more than the 1 allowed"),
        Case("suite-n-boot-10**12-no-run", suite(["--no-run"], metric_options={"n_boot": 10**12}), nboot),
        Case("suite-n-boot-10**12-dry-run", suite(["--dry-run"], metric_options={"n_boot": 10**12}), nboot),
        Case("config-n-boot-10**12-dry-run", lambda c: [
            "run", "--config", c.write("r.yaml", _yaml_dump({**RUN, "metric_options": {"n_boot": 10**12}})),
            "--dry-run"], nboot),
    ]
    return cases


# ------------------------------------------------------------------------------------- refused runs leave nothing
_SAVED: dict[str, Path] = {}


def _saved_tiny(c, name: str) -> Path:
    """A copy of the tiny model saved as a model directory (saved once per session), for ``c`` to break."""
    import tempfile

    if "dir" not in _SAVED:
        from chainforget.engine.models import load_tiny

        model, tok = load_tiny(seed=0)
        _SAVED["dir"] = Path(tempfile.mkdtemp(prefix="tiny-model-")) / "tiny"
        model.save_pretrained(_SAVED["dir"], safe_serialization=True)
        tok.save_pretrained(_SAVED["dir"])
    d = c.work / name
    shutil.copytree(_SAVED["dir"], d)
    return d


def _no_tokenizer(c):
    d = _saved_tiny(c, "notok")
    for p in d.iterdir():
        if "token" in p.name or "chat_template" in p.name:
            p.unlink()
    return d


def _bin_weights(c):
    d = _saved_tiny(c, "bin")
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    return d


def _remote_code(c):
    d = _saved_tiny(c, "remote")
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(model_type="xmodel", architectures=["XModel"], auto_map={"AutoModelForCausalLM": "modeling_x.XModel"})
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "modeling_x.py").write_text("raise SystemExit('remote code ran')\n")
    return d


def _garbage_tokenizer(c):
    d = _saved_tiny(c, "badtok")
    (d / "tokenizer.json").write_text("garbage{")
    return d


def _no_chat_template(c):
    d = _saved_tiny(c, "nochat")
    (d / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    return d


def refused_run_cases() -> list[Case]:
    """A run refused after its folder would be made (model loading, LoRA targets, chat template) leaves --out as it
    was: the corpus test checks that no file appeared."""
    def run(model, *flags):
        return lambda c: ["run", "--chain", "bbq", "--model", model(c) if callable(model) else model,
                          "--limit-train", "4", "--limit-eval", "4", *flags, "-q"]

    return [
        Case("refused-lora-targets-bogus", run("tiny", "--finetune", "lora", "--lora-targets", "bogus_proj"),
             "lora_targets bogus_proj match no linear layer"),
        Case("refused-model-without-tokenizer", run(_no_tokenizer), "could not load the model"),
        Case("refused-model-bin-weights-only", run(_bin_weights), "holds no *.safetensors weights"),
        Case("refused-model-remote-code", run(_remote_code), "--trust-remote-code"),
        Case("refused-model-garbage-tokenizer", run(_garbage_tokenizer), "could not load the model"),
        Case("refused-hf-revision-traversal", run("hf:org/n@../../x"), "hf:org/n@../../x"),
        Case("refused-chat-template-missing", run(_no_chat_template, "--chat-template"), "has no chat template"),
        Case("refused-leaderboard-model-without-tokenizer", lambda c: [
            "leaderboard", "--suite", c.write("s.yaml", _yaml_dump({**SUITE, "model": str(_no_tokenizer(c))})), "-q"],
             "could not load the model"),
    ]


# ---------------------------------------------------------------------------------------------- model dirs
def _model_dir(c, config, weights: bytes | None = None):
    d = c.work / "model"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    if weights is not None:
        (d / "model.safetensors").write_bytes(weights)
    return ["run", "--chain", "bbq", "--model", d, "-q"]


def model_cases() -> list[Case]:
    llama = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "intermediate_size": 128, "vocab_size": 100}
    header = json.dumps({"w": {"dtype": "F32", "shape": [100, 64], "data_offsets": [0, 25600]}}).encode()
    truncated = len(header).to_bytes(8, "little") + header + b"\0" * 1000
    return [
        Case("model-config-list", lambda c: _model_dir(c, [1, 2]), "must hold a JSON object of model settings"),
        Case("model-hidden-size-negative", lambda c: _model_dir(c, {**llama, "hidden_size": -64}),
             "hidden_size must be an integer in [1, 10000000], got -64"),
        Case("model-layers-two", lambda c: _model_dir(c, {**llama, "num_hidden_layers": "two"}),
             "num_hidden_layers must be an integer"),
        Case("model-config-not-json", lambda c: _model_dir(c, "{model_type: llama"), "not valid JSON"),
        Case("model-truncated-weights", lambda c: _model_dir(c, llama, truncated), "is truncated"),
        Case("model-weights-garbage", lambda c: _model_dir(c, llama, b"\xff" * 64), "not a complete safetensors file"),
    ]


# --------------------------------------------------------------------------------------------- numbers
def number_cases() -> list[Case]:
    def run(*flags):
        return lambda c: ["run", "--chain", "bbq,gsm8k", "--model", "tiny", *flags, "-q"]

    def cfg(**changes):
        return lambda c: ["run", "--config", c.write("r.yaml", _yaml_dump({**RUN, **changes})), "-q"]

    def suite(**changes):
        return lambda c: ["leaderboard", "--suite", c.write("s.yaml", _yaml_dump({**SUITE, **changes})), "-q"]

    big = 2**64
    cases = [
        Case("flag-seed-2**64", run("--seed", big), "seed must be an integer in [0, 4294967295]"),
        Case("flag-seed-2**64-lora", run("--seed", big, "--finetune", "lora"), "seed must be an integer in"),
        Case("flag-seed-2**64-sharpness", run("--seed", big, "--sharpness"), "seed must be an integer in"),
        Case("config-seed-2**64", cfg(seed=big), "seed must be an integer in [0, 4294967295]"),
        Case("suite-seed-2**64", suite(seeds=[big]), "seed must be an integer in [0, 4294967295]"),
        Case("flag-lora-r-10**9", run("--lora-r", 10**9, "--finetune", "lora"), "lora_r must be <= 4096"),
        Case("set-lora-r-10**9", run("--set", f"train.lora_r={10**9}"), "lora_r must be <= 4096"),
        Case("config-lora-r-10**9", cfg(train={"lora_r": 10**9}), "lora_r must be <= 4096"),
        Case("flag-epochs-10**9", run("--epochs", 10**9), "epochs must be <= 10000"),
        Case("flag-max-length-huge", run("--max-length", 10**12), "max_length must be <= 1048576"),
        Case("flag-limit-eval-huge", run("--limit-eval", 10**12), "limit_eval must be an integer in"),
        Case("config-eval-batch-huge", cfg(eval_batch_size=10**9), "eval_batch_size must be an integer in"),
        Case("config-n-boot-10**12", cfg(metric_options={"n_boot": 10**12}), "n_boot must be an integer in"),
        Case("suite-n-boot-10**12", suite(metric_options={"n_boot": 10**12}), "n_boot must be an integer in"),
        Case("config-metric-seed--1", cfg(metric_options={"seed": -1}), "seed must be an integer in"),
        Case("compare-seed--1", lambda c: ["compare", c.run, c.run, "--seed", -1],
             "seed must be an integer in [0, 4294967295], got -1"),
        Case("compare-seed-2**64", lambda c: ["compare", c.run, c.run, "--seed", big], "seed must be an integer"),
        Case("compare-n-boot-10**12", lambda c: ["compare", c.run, c.run, "--n-boot", 10**12],
             "n_boot must be an integer in [1, 1000000]"),
        Case("compare-n-boot-0", lambda c: ["compare", c.run, c.run, "--n-boot", 0], "n_boot must be an integer"),
    ]
    for flag, value, expect in (("--probe-size", 0, "probe_size must be an integer in [1, 65536], got 0"),
                                ("--probe-size", -1, "probe_size must be an integer in [1, 65536], got -1"),
                                ("--max-iter", 0, "max_iter must be an integer in"),
                                ("--max-iter", 10**9, "max_iter must be an integer in"),
                                ("--tol", "nan", "tol must be a number in (0, 1], got nan"),
                                ("--tol", "inf", "tol must be a number in (0, 1]"),
                                ("--tol", 0, "tol must be a number in (0, 1]"),
                                ("--tol", -1, "tol must be a number in (0, 1]")):
        cases.append(Case(f"sharpness{flag}={value}", lambda c, f=flag, v=value: ["sharpness", c.run, f, v], expect))
    return cases


# ----------------------------------------------------------------------------------------------- wording
def wording_cases() -> list[Case]:
    return [
        Case("config-missing-says-run-config", lambda c: ["run", "--config", c.work / "nope.yaml", "-q"],
             "run config"),
        Case("config-not-mapping-says-path", lambda c: ["run", "--config", c.write("r.yaml", "- a\n"), "-q"],
             "must hold a YAML mapping"),
        Case("suite-missing", lambda c: ["leaderboard", "--suite", c.work / "nope.yaml", "-q"], "suite file"),
    ]


def all_cases(include_wandb: bool) -> list[Case]:
    cases = (hostile_yaml_cases() + toml_cases() + data_row_cases() + task_type_cases() + misreading_cases()
             + state_cases() + model_cases() + number_cases() + wording_cases() + trust_cases()
             + refused_run_cases())
    if include_wandb:
        cases.append(Case("log-wandb", lambda c: ["run", "--chain", "bbq,gsm8k", "--model", "tiny", "--log", "wandb",
                                                  "-q"], "--log wandb"))
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    return cases
