"""Seeded generators of malformed inputs for the fuzz test in test_reliability_inputs.py (no tests here).

Each generator starts from a valid input and applies one mutation that is invalid by construction (a misspelled or
unknown key, a wrong type, an out-of-range value, broken syntax, a code-executing YAML tag, corrupt data), so every
case must be refused.
"""

from __future__ import annotations

import gzip
import json
import random
import string
from pathlib import Path

import yaml
from reliability_support import EWC, SUITE, TINY

RUN_KEYS = ("chain", "strategy", "model", "seed", "strategy_params", "train", "eval_tasks", "limit_train",
            "limit_eval", "task_options", "eval_batch_size", "metric_options")
BAD_SCALARS = {
    "seed": ["abc", -1, 1.5, [0], True],
    "limit_train": [0, -3, "ten", 2.5, [1], {"bbq": 0}, {"nope": 3}],
    "limit_eval": [0, -1, "x", {"default": -2}],
    "eval_batch_size": [0, -2, "x", 1.5, True],
    "sharpness": ["maybe", 2],
    "train": [5, "fast", [1]],
    "strategy_params": [5, ["fraction"]],
    "metric_options": [5, "n_boot"],
    "task_options": [5, {"gsm8k": 5}],
    "chain": ["", [], "bbq,,gsm8k", "bbq,bbq", 5, ["bbq", 3], "bbq,nosuch", "bbq,gsm8k,bbq"],
    "strategy": ["ewcc", "", "nosuch", 5, ["ewc"]],
    "model": ["tinny", "smollm2", "", 5],
    "eval_tasks": [5, "nope", ["bbq", 7]],
}
BAD_TRAIN = {
    "learning_rate": ["fast", -1, 0, float("nan"), float("inf"), True], "epochs": [0, -1, "x", 1.5],
    "batch_size": [0, "x", -4], "micro_batch_size": [0, -1], "warmup_ratio": [2, -0.1, "x"],
    "schedule": ["cubic", 5], "finetune": ["half", 1], "max_grad_norm": [-1, "x"], "max_length": [0, "x", 4],
    "weight_decay": [-1], "max_steps": [-1, 0], "lora_r": [0], "mixed_precision": ["fp8"],
    "gradient_checkpointing": ["maybe"], "lora_dropout": [2], "lora_targets": [5],
}
BAD_EWC = {"lambda": [-1, "x"], "mode": ["sideways", 3], "decay": [-1, 5], "fisher_samples": [-1, 1.5, True]}
BAD_METRIC_OPTIONS = [{"n_boot": 0}, {"n_boot": "x"}, {"nboot": 3}, {"seed": -1}, {"min_group_size": 0},
                      {"n_boot": True}]
BAD_TASK_OPTIONS = [{"nope": {}}, {"gsm8k": {"primary_metric": "gold_logprb"}}, {"gsm8k": {"bogus": 1}},
                    {"bbq": {"primary_metric": "exact"}}]
CODE_TAGS = ["!!python/object/apply:os.system ['touch {pwned}']", "!!python/name:os.system",
             "!!python/object/new:subprocess.Popen [['touch', '{pwned}']]", "!!python/module:os"]
BROKEN_YAML = ["seed: [0\n", "\tseed: 1\n", 'model: "tiny\n', "train: {epochs: 1\n", "- a\nb: 1\n", "? [\n"]
NOT_A_MAPPING = ["- a\n- b\n", "just text\n", "", "42\n", "null\n"]


def _misspell(rng: random.Random, key: str, known) -> str:
    for _ in range(20):
        i = rng.randrange(len(key))
        new = rng.choice([key[:i] + key[i + 1:], key[:i] + key[i] * 2 + key[i:],
                          key[:i] + rng.choice(string.ascii_lowercase) + key[i + 1:], key.upper()])
        if new and new not in known:
            return new
    return key + "_x"


def _mutate(rng: random.Random, cfg: dict, keys, scalars: dict, pwned: Path) -> str:
    """One invalid mutation of a valid mapping ``cfg``; returns the YAML text."""
    kind = rng.choice(["misspell", "unknown", "scalar", "train", "strategy", "metric", "task", "tag", "syntax",
                       "not_mapping"])
    cfg = json.loads(json.dumps(cfg))
    if kind == "misspell":
        key = rng.choice(sorted(cfg))
        cfg[_misspell(rng, key, keys)] = cfg.pop(key)
    elif kind == "unknown":
        cfg["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 9))) + "_z"] = 1
    elif kind == "scalar":
        key = rng.choice(sorted(scalars))
        cfg[key] = rng.choice(scalars[key])
    elif kind == "train":
        key = rng.choice(sorted(BAD_TRAIN))
        if rng.random() < 0.2:
            key = _misspell(rng, key, BAD_TRAIN)
        cfg.setdefault("train", {})[key] = rng.choice(BAD_TRAIN.get(key, [1]))
    elif kind == "strategy":
        key = rng.choice(sorted(BAD_EWC) + ["lamda", "fisher"])
        params = {key: rng.choice(BAD_EWC.get(key, [1]))}
        if "strategies" in cfg:
            cfg["strategies"] = ["naive", {"ewc": params}]
        else:
            cfg["strategy_params"] = params
    elif kind == "metric":
        cfg["metric_options"] = rng.choice(BAD_METRIC_OPTIONS)
    elif kind == "task":
        cfg["task_options"] = rng.choice(BAD_TASK_OPTIONS)
    elif kind == "tag":  # the value of one key becomes a YAML tag that would run code under yaml.load
        key = rng.choice(sorted(cfg))
        cfg.pop(key)
    text = yaml.safe_dump(cfg, sort_keys=False)
    if kind == "tag":
        text += f"{key}: {rng.choice(CODE_TAGS).format(pwned=pwned)}\n"
    elif kind == "syntax":
        text += rng.choice(BROKEN_YAML)
    elif kind == "not_mapping":
        text = rng.choice(NOT_A_MAPPING)
    return text


def bad_run_configs(folder: Path, n: int, seed: int = 1009) -> list[tuple[str, Path]]:
    rng, folder = random.Random(seed), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = {"chain": "bbq,gsm8k", "model": "tiny", "strategy": "ewc", "strategy_params": EWC, **TINY}
    out = []
    for i in range(n):
        path = folder / f"run-{i}.yaml"
        path.write_text(_mutate(rng, base, RUN_KEYS, BAD_SCALARS, folder.parent / "PWNED"))
        out.append(("run", path))
    return out


SUITE_SCALARS = {
    "chains": [5, [[]], [["bbq", "bbq"]], [["nope"]], [5], [{"a": 1}], [["bbq", "gsm8k"], ["gsm8k", "gsm8k"]]],
    "strategies": [["ewcc"], [{"ewc": 5}], [5], [{"a": {}, "b": {}}], 5, [["ewc"]], ["naive", "nosuch"]],
    "seeds": [["x"], [-1], [1.5], "x", [0, "x"]],
    "finetune": [["half"], "half"], "learning_rate": [["fast"], [-1], [0, 1e-3]],
    "eval_batch_size": [0, "x"], "limit_eval": [0, {"nope": 1}], "model": ["tinny"],
    "eval_tasks": [["nope"], 5],
}


def bad_suites(folder: Path, n: int, seed: int = 2027) -> list[tuple[str, Path]]:
    rng, folder = random.Random(seed), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = folder / f"suite-{i}.yaml"
        path.write_text(_mutate(rng, SUITE, tuple(SUITE) + ("description",), SUITE_SCALARS, folder.parent / "PWNED"))
        out.append(("suite", path))
    return out


# --------------------------------------------------------------------------------------------- task data files
TASK = {"name": None, "kind": "safety", "prompt_template": "Post: {text}\nAnswer:", "options": ["No", "Yes"],
        "data": None, "columns": {"id": "pid", "gold": "label", "group": "community"}}


def _rows(rng: random.Random) -> list[dict]:
    return [{"pid": f"p{i}", "text": f"post {i} " + "".join(rng.choice(string.ascii_lowercase) for _ in range(8)),
             "label": rng.randint(0, 1), "community": rng.choice(["north", "south", "east"])} for i in range(10)]


def _jsonl(rows) -> list[str]:
    return [json.dumps(r) for r in rows]


def _csv(rows, columns=("pid", "text", "label", "community")) -> list[str]:
    return [",".join(columns)] + [",".join(str(r.get(c, "")) for c in columns) for r in rows]


def _corrupt(rng: random.Random, fmt: str, rows: list[dict]) -> bytes | None:
    """Data that must be refused: bad lines, missing columns, bad labels, empty, not UTF-8, duplicate ids..."""
    choices = ["missing_column", "bad_label", "empty_group", "empty", "not_utf8", "duplicate_id", "missing_file"]
    if fmt != "csv":
        choices += ["bad_json", "not_object"]
    kind = rng.choice(choices)
    i = rng.randrange(len(rows))
    if kind == "missing_column":
        col = rng.choice(["pid", "text", "label", "community"])
        if fmt == "csv":
            lines = _csv(rows, tuple(c for c in ("pid", "text", "label", "community") if c != col))
            return ("\n".join(lines) + "\n").encode()
        del rows[i][col]
    elif kind == "bad_label":
        rows[i]["label"] = rng.choice([2, -1, 7, "yes", 1.5, None])
    elif kind == "empty_group":
        rows[i]["community"] = rng.choice(["", None]) if fmt != "csv" else ""
    elif kind == "duplicate_id":
        rows[i]["pid"] = rows[(i + 1) % len(rows)]["pid"]
    elif kind == "empty":
        return rng.choice([b"", b"\n\n"]) if fmt != "csv" else b""
    elif kind == "missing_file":
        return None
    lines = _csv(rows) if fmt == "csv" else _jsonl(rows)
    at = rng.randint(1 if fmt == "csv" else 0, len(lines))
    if kind == "bad_json":
        lines.insert(at, rng.choice(['{"pid": ', "{bad}", "{'pid': 'x'}", '{"pid": "x",}', '{"a": 1']))
    elif kind == "not_object":
        lines.insert(at, rng.choice(["[1, 2]", '"text"', "42", "null", "NaN", "true"]))
    data = ("\n".join(lines) + "\n").encode()
    if kind == "not_utf8":
        cut = data.index(b"post", rng.randrange(len(data) // 2))
        data = data[:cut] + rng.choice([b"\xff\xfe", b"\xc3\x28", b"\x80"]) + data[cut:]
    return data


def bad_data_cases(folder: Path, n: int, seed: int = 4099) -> list[tuple[str, Path]]:
    """Task files (YAML or TOML) over corrupt data files, or broken task files over good data."""
    rng, folder = random.Random(seed), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        fmt = rng.choice(["jsonl", "jsonl.gz", "csv"])
        rows = _rows(rng)
        task = json.loads(json.dumps({**TASK, "name": f"fuzz-{i}", "data": f"data-{i}.{fmt}"}))
        data: bytes | None
        if rng.random() < 0.7:
            data = _corrupt(rng, fmt.replace(".gz", ""), rows)
        else:  # good data, broken task file
            data = ("\n".join(_csv(rows) if fmt == "csv" else _jsonl(rows)) + "\n").encode()
            fault = rng.choice(["unknown_key", "bad_kind", "bad_format", "no_name", "bad_column_key", "bad_metric",
                                "bad_split", "empty_groups"])
            if fault == "unknown_key":
                task[_misspell(rng, rng.choice(["columns", "options", "prompt_template"]), TASK)] = task.pop("columns")
            elif fault == "bad_kind":
                task["kind"] = rng.choice(["safty", "danger", 5])
            elif fault == "bad_format":
                task["format"] = rng.choice(["multiple-choice", "mc", "gen"])
            elif fault == "no_name":
                task["name"] = rng.choice(["", None])
            elif fault == "bad_column_key":
                task["columns"]["lable"] = "label"
            elif fault == "bad_metric":
                task["metrics"] = [rng.choice(["accc", "accuracy", "bleu"])]
            elif fault == "bad_split":
                task["split"] = rng.choice([{"eval_fractoin": 0.5}, {"eval_fraction": 2.0}, 5])
            else:
                task["groups"] = ["nowhere"]
        if data is not None:
            payload = gzip.compress(data, mtime=0) if fmt.endswith(".gz") else data
            if fmt.endswith(".gz") and rng.random() < 0.4:  # a truncated download
                payload = payload[:rng.randrange(1, len(payload) - 1)]
            (folder / f"data-{i}.{fmt}").write_bytes(payload)
        if rng.random() < 0.3 and None not in (task.get("name"),) and not isinstance(task.get("split"), int):
            path = folder / f"task-{i}.toml"
            path.write_text(_toml(task) + rng.choice(["", "", "kind = \n", "name = 'x\n", "[columns\n"]))
        else:
            path = folder / f"task-{i}.yaml"
            path.write_text(yaml.safe_dump(task, sort_keys=False) + rng.choice(["", "", "", "", "notes: [\n"]))
        out.append(("data", path))
    return out


def _toml(task: dict) -> str:
    """A minimal TOML writer for the flat task mapping (strings, numbers, lists, one level of tables)."""
    def value(v):
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)

    return "".join(f"{k} = {value(v)}\n" for k, v in task.items() if v is not None)
