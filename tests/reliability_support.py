"""Helpers for the reliability tests (no tests here): a fork server that runs the real CLI in child processes.

Why a fork server: every `python -m chainforget` pays ~7 s importing torch, transformers and Avalanche before it
does any work, and the kill tests start a dozen processes. The server imports those once (and runs no torch op, so
no thread pool exists at fork time); each request forks a child that runs ``chainforget.cli.main(args)`` exactly as
the console script does, with its own cwd, environment, stdout and stderr files. The children are ordinary
processes: the tests SIGKILL them (or they SIGKILL themselves at a planted fault point) and read their exit status.
The server also parses the shipped bbq and gsm8k data once (2-3 s per process otherwise): that cache is read-only
and keyed by the data files' mtimes; everything a run writes starts from nothing in every child.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
TINY = {  # as small as a run gets while every stage still trains, evaluates and writes every kind of file
    "limit_train": {"bbq": 8, "gsm8k": 4},
    "limit_eval": {"bbq": 9, "gsm8k": 2},
    "task_options": {"gsm8k": {"primary_metric": "gold_logprob"}},
    "train": {"batch_size": 4, "micro_batch_size": 4, "max_length": 128, "learning_rate": 1e-3},
    "eval_batch_size": 8,
    "metric_options": {"n_boot": 50},
}
EWC = {"fisher_samples": 2}
SUITE = {"model": "tiny", "chains": [["bbq", "gsm8k"]], "strategies": ["naive", {"ewc": EWC}], "seeds": [0], **TINY}
RUN_CONFIG = {"model": "tiny", "chain": ["bbq", "gsm8k"], "strategy": "ewc", "strategy_params": EWC, **TINY}


def _serve() -> None:  # runs in the server process
    import avalanche.training  # noqa: F401  (the heavy imports, once)
    import torch  # noqa: F401
    import transformers  # noqa: F401

    import chainforget.benchmark.runner  # noqa: F401
    import chainforget.benchmark.stage_runner  # noqa: F401
    import chainforget.cli  # noqa: F401
    import chainforget.engine.scoring  # noqa: F401
    import chainforget.engine.template  # noqa: F401
    import chainforget.metrics.compute  # noqa: F401
    from chainforget.plugins import registries

    for kind in ("tasks", "strategies", "metrics", "models", "presets"):
        registries(kind)
    for name in ("bbq", "gsm8k"):  # parse the shipped data once (a read-only cache keyed by the files' mtimes)
        task = registries("tasks").get(name)
        task.train_examples(), task.eval_examples(), task.fingerprint()
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "start":
            pid = os.fork()
            if pid == 0:
                _child(req)
            out.write(json.dumps({"pid": pid}) + "\n")
        elif req["op"] == "wait":
            _, status = os.waitpid(req["pid"], 0)
            out.write(json.dumps({"rc": os.waitstatus_to_exitcode(status)}) + "\n")
        else:
            return
        out.flush()


def _child(req: dict) -> None:
    code = 1
    try:
        os.chdir(req["cwd"])
        os.environ.update(req["env"])
        for fd, path in ((1, req["out"]), (2, req["err"])):
            f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(f, fd)
            os.close(f)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from chainforget.cli import main

        try:
            main(req["args"], prog_name="chainforget")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - a child must never return into the server loop
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class ForkServer:
    """Start CLI children from a pre-imported server: ``start`` returns a pid, ``wait`` its exit status."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(TESTS_DIR)!r}); "
                                   f"import reliability_support as s; s._serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=workdir)
        assert self.proc.stdout.readline().strip() == "ready"
        self.n = 0
        self.logs: dict[int, tuple[Path, Path]] = {}

    def _ask(self, req: dict) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def start(self, args: list[str], env: dict | None = None, cwd: Path | None = None) -> int:
        self.n += 1
        out, err = self.workdir / f"child-{self.n}.out", self.workdir / f"child-{self.n}.err"
        pid = self._ask({"op": "start", "args": list(args), "env": dict(env or {}), "cwd": str(cwd or self.workdir),
                         "out": str(out), "err": str(err)})["pid"]
        self.logs[pid] = (out, err)
        return pid

    def wait(self, pid: int) -> tuple[int, str, str]:
        rc = self._ask({"op": "wait", "pid": pid})["rc"]
        out, err = self.logs.pop(pid)
        return rc, out.read_text(), err.read_text()

    def run(self, args: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[int, str, str]:
        return self.wait(self.start(args, env, cwd))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


# ------------------------------------------------------------------------------------------------- file checks
def digest(path: Path) -> str:
    """sha256 of a file's bytes (safetensors included: the store writes their header with sorted keys)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def snapshot(root: Path, skip: tuple[str, ...] = (".lock",)) -> dict[str, str]:
    """``digest`` of every file under ``root`` by relative path (lock files and writers' temp files excluded)."""
    return {str(p.relative_to(root)): digest(p)
            for p in sorted(Path(root).rglob("*"))
            if p.is_file() and not p.name.endswith(skip) and not (p.name.startswith(".") and p.name.endswith(".tmp"))}


def every_file(root: Path) -> dict[str, str]:
    """``digest`` of every file under ``root``, nothing excluded (for "byte-identical, nothing added")."""
    return {str(p.relative_to(root)): digest(p) for p in sorted(Path(root).rglob("*")) if p.is_file()}


def temp_files(root: Path) -> list[Path]:
    """Every file under an --out directory that the store's layout does not name: temporary files of any name
    (ours, ``.<name>.<random>.tmp``, or a library's own), orphans, strays."""
    from chainforget.store.layout import is_layout_file

    return sorted(p for p in Path(root).rglob("*") if p.is_file() and not is_layout_file(root, p))


def check_no_half_files(root: Path) -> int:
    """Every file under its final name is complete, and everything a DONE marker vouches for loads.

    Returns the number of files checked. Temporary files (``.*.tmp``) are never read by chainforget and are skipped.
    """
    from safetensors import safe_open

    from chainforget.store import results as store
    from chainforget.store.atomic import read_jsonl_gz
    from chainforget.store.markers import verify_marker

    n = 0
    for p in sorted(Path(root).rglob("*")):
        if not p.is_file() or (p.name.startswith(".") and p.name.endswith(".tmp")) or p.name.endswith(".lock"):
            continue
        n += 1
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.name.endswith(".jsonl.gz"):
            read_jsonl_gz(p)
        elif p.suffix == ".safetensors":
            with safe_open(str(p), "pt") as f:
                for key in f.keys():
                    f.get_tensor(key)
        elif p.name == "DONE":
            d = p.parent
            if d.parent.name == "_prefix":  # a prefix entry: records + meta, and weights for trained stages
                assert verify_marker(d) is None, (d, verify_marker(d))
                read_jsonl_gz(d / "records.jsonl.gz")
                json.loads((d / "meta.json").read_text())
                assert d.name.startswith("base-") or (d / "weights.safetensors").is_file(), d
            elif d.parent.name == "checkpoints":
                assert verify_marker(d, ["state.json"]) is None, (d, verify_marker(d))
                assert json.loads((d / "state.json").read_text())["step"] == int(d.name.split("-")[1])
            else:
                result = store.load_result(d)
                store.load_records(d, range(len(result["stages"])))
        elif p.suffix == ".gz":
            gzip.decompress(p.read_bytes())
    return n


def comparable(run_dir: Path) -> dict[str, str]:
    """What must be identical between two runs of the same spec: every file, and result.json minus its timings and
    the git hash of the source tree (which moves when someone commits while the tests run)."""
    snap = snapshot(run_dir, skip=(".lock", "DONE", "result.json"))
    result = json.loads((run_dir / "result.json").read_text())
    result.pop("timings")
    result.pop("git")
    snap["result.json minus timings"] = hashlib.sha256(json.dumps(result, sort_keys=True).encode()).hexdigest()
    return snap


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# ------------------------------------------------------------------------------------- figures in the docs
DOC = TESTS_DIR.parent / "docs" / "reliability.md"


def doc_section(name: str) -> str:
    """The text between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in docs/reliability.md."""
    text = DOC.read_text(encoding="utf-8")
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    assert begin in text and end in text, f"docs/reliability.md lacks the {name} markers"
    return text.split(begin, 1)[1].split(end, 1)[0].strip()


def update_doc_section(name: str, body: str) -> None:
    """Replace that section (the figures the tests measured) in docs/reliability.md."""
    text = DOC.read_text(encoding="utf-8")
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    DOC.write_text(f"{head}{begin}\n{body.strip()}\n{end}{tail}", encoding="utf-8")
