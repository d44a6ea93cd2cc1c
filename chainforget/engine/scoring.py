"""Evaluate a live model on a task's examples and return one evaluation record per example.

The records (``docs/contracts.md``, "Evaluation records") are the single source of truth: every metric is
recomputable from them without the model. Multiple choice is scored by log-likelihood with every shared context
prefix encoded once (the options of an example, and the examples that share a context: ``engine.loglik``,
``engine.shared_context``); generation is greedy with continuous batching (``engine.generation``). Metrics supported per format:

- multiple_choice: ``acc`` (argmax of summed log-likelihood), ``acc_norm`` (argmax of log-likelihood divided by the
  option's length in characters, lm-eval's convention: the option text without its leading delimiter whitespace),
  ``gold_logprob`` (mean per-token log-probability of the gold option).
- generation: ``exact_match`` (final number, GSM8K style), ``gold_logprob`` (mean per-token log-probability of the
  example's ``target`` given its prompt, teacher-forced). With only ``gold_logprob`` nothing is generated.

``pred`` is the ``acc`` choice for multiple choice and the parsed number for generation; ``correct`` mirrors
``scores["acc"]`` / ``scores["exact_match"]`` (``None`` when the task does not list that metric).
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Mapping, Sequence

from chainforget.engine import generation as gen
from chainforget.engine import loglik
from chainforget.engine.counts import TokenCount, pad_token_id
from chainforget.engine.logs import progress_bar
from chainforget.engine.lora_merge import merged_lora
from chainforget.errors import ConfigError, DataError

MC_METRICS = ("acc", "acc_norm", "gold_logprob")
GEN_METRICS = ("exact_match", "gold_logprob")


@contextlib.contextmanager
def _eval_mode(model):
    """Put every module in eval mode and restore each module's own flag afterwards (peft/frozen parts included)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _check(spec, examples, batch_size) -> list[str]:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"evaluation batch size must be a positive integer, got {batch_size!r}")
    known = {"multiple_choice": MC_METRICS, "generation": GEN_METRICS}.get(spec.format)
    if known is None:
        raise ConfigError(f"task {spec.name} has format {spec.format!r}; the scorer supports multiple_choice and "
                          f"generation")
    names = [m.name for m in spec.metrics]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"task {spec.name} lists metric(s) {', '.join(unknown)} that the {spec.format} scorer "
                          f"cannot compute; use {', '.join(known)}")
    if spec.primary_metric not in names:
        raise ConfigError(f"task {spec.name}: primary metric {spec.primary_metric!r} is not among its metrics "
                          f"{names}")
    for ex in examples:
        if spec.format == "multiple_choice":
            if not ex.options or not isinstance(ex.gold, int) or not 0 <= ex.gold < len(ex.options):
                raise DataError(f"task {spec.name} example {ex.id}: multiple choice needs options and an integer "
                                f"gold index within them")
    return names


def _record(spec, ex, stage: int, **fields) -> dict:
    rec = {"task": spec.name, "step": stage, "id": ex.id, "group": ex.group, "subgroup": ex.subgroup,
           "gold": ex.gold, "pred": None, "correct": None, "scores": {}, "primary": spec.primary_metric,
           "option_logliks": None, "option_lengths": None, "option_chars": None,
           "generated": None, "parsed": None, "meta": _jsonable(ex.meta)}
    rec.update(fields)
    return rec


def _argmax(values: Sequence[float]) -> int:
    """First index of the maximum (ties go to the earlier option, deterministically)."""
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def context_limit(model) -> int | None:
    """The longest sequence the model reads: scoring contexts are cut from the left to fit it."""
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


def loglik_requests(tokenizer, spec, examples: Sequence[Any], max_length: int | None) -> list[loglik.Request]:
    """The log-likelihood requests the scorer runs for these examples: each multiple-choice example's options, or
    each generation example's target when the task lists ``gold_logprob``; none when the task only generates. The
    dry run prices these same requests."""
    if spec.format == "multiple_choice":
        continuations = [list(ex.options) for ex in examples]
    elif "gold_logprob" in {m.name for m in spec.metrics}:
        continuations = [[ex.target] for ex in examples]
    else:
        return []
    return loglik.encode_requests(tokenizer, [ex.prompt for ex in examples], continuations, max_length)


def generates(spec) -> bool:
    """Whether the scorer generates for this task (``exact_match`` of a generation task)."""
    return spec.format == "generation" and "exact_match" in {m.name for m in spec.metrics}


def _bar(progress: bool, total: int, desc: str):
    return progress_bar(total=total, desc=desc, unit="ex", enabled=progress, leave=False, dynamic_ncols=True,
                        mininterval=0)  # updates come per batch: draw each, so the last count is always shown


def _score_mc(model, tokenizer, spec, examples, names, stage, batch_size, progress, device, count) -> list[dict]:
    requests = loglik_requests(tokenizer, spec, examples, context_limit(model))
    with _bar(progress, len(examples), f"eval {spec.name}") as bar:
        scored = loglik.score_requests(model, requests, batch_size=batch_size, pad_id=pad_token_id(tokenizer),
                                       device=device, on_batch=bar.update, count=count)
    records = []
    for ex, res in zip(examples, scored):
        lls = [s for s, _ in res]
        lengths = [n for _, n in res]
        chars = [len(o.lstrip()) for o in ex.options]
        pred = _argmax(lls)
        scores = {}
        if "acc" in names:
            scores["acc"] = float(pred == ex.gold)
        if "acc_norm" in names:
            scores["acc_norm"] = float(_argmax([ll / max(c, 1) for ll, c in zip(lls, chars)]) == ex.gold)
        if "gold_logprob" in names:
            scores["gold_logprob"] = lls[ex.gold] / max(lengths[ex.gold], 1)
        records.append(_record(spec, ex, stage, pred=pred, correct=scores.get("acc"), scores=scores,
                               option_logliks=lls, option_lengths=lengths, option_chars=chars))
    return records


def generation_settings(spec) -> tuple[int, list[str], str | None, str]:
    """``max_new_tokens`` and stop sequences from ``spec.generation`` (keys ``max_new_tokens``, ``stop``/``until``).

    ``spec.generation`` may also give ``answer_pattern`` (a regex whose group 1 is the answer) and ``fallback``
    (``"last_number"``, the default, or anything else for none); see ``generation.parse_final_number``.
    """
    cfg = dict(spec.generation or {})
    max_new = cfg.get("max_new_tokens", gen.DEFAULT_MAX_NEW_TOKENS)
    stop = cfg.get("stop", cfg.get("until", gen.DEFAULT_STOP))
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(max_new, int) or isinstance(max_new, bool) or max_new < 1:
        raise ConfigError(f"task {spec.name}: generation max_new_tokens must be a positive integer, got {max_new!r}")
    if not all(isinstance(s, str) for s in stop):
        raise ConfigError(f"task {spec.name}: generation stop sequences must be strings, got {stop!r}")
    pattern = cfg.get("answer_pattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise ConfigError(f"task {spec.name}: answer_pattern {pattern!r} is not a valid regex ({exc})") from None
    return max_new, list(stop), pattern, str(cfg.get("fallback", "last_number"))


def _score_generation(model, tokenizer, spec, examples, names, stage, batch_size, progress, device,
                      count) -> list[dict]:
    n = len(examples)
    generated = parsed = None
    if generates(spec):
        max_new, stop, pattern, fallback = generation_settings(spec)
        with _bar(progress, n, f"eval {spec.name} (generate)") as bar:
            outs = gen.greedy_generate(model, tokenizer, [ex.prompt for ex in examples], max_new_tokens=max_new,
                                       stop=stop, batch_size=batch_size, device=device, on_batch=bar.update)
        generated = [o.text for o in outs]
        parsed = [gen.parse_final_number(t, pattern, fallback) for t in generated]
    gold_lp = None
    if "gold_logprob" in names:
        requests = loglik_requests(tokenizer, spec, examples, context_limit(model))
        with _bar(progress, n, f"eval {spec.name} (gold logprob)") as bar:
            scored = loglik.score_requests(model, requests, batch_size=batch_size, pad_id=pad_token_id(tokenizer),
                                           device=device, on_batch=bar.update, count=count)
        gold_lp = [s / max(k, 1) for (s, k), in scored]
    records = []
    for i, ex in enumerate(examples):
        scores, fields = {}, {}
        if generated is not None:
            scores["exact_match"] = gen.exact_match(parsed[i], str(ex.gold))
            fields = dict(pred=parsed[i], correct=scores["exact_match"], generated=generated[i], parsed=parsed[i])
        if gold_lp is not None:
            scores["gold_logprob"] = gold_lp[i]
        records.append(_record(spec, ex, stage, scores=scores, **fields))
    return records


def score_examples(model, tokenizer, spec, examples, *, stage: int = 0, batch_size: int = 16,
                   progress: bool = False, device=None, count: TokenCount | None = None) -> list[dict]:
    """One evaluation record per example (contract format), scoring exactly the metrics ``spec.metrics`` lists.

    The model is used live: run under ``torch.no_grad`` in eval mode, then every module's train/eval flag is
    restored; LoRA adapters are merged for the duration on a CPU and the exact weights restored
    (``engine.lora_merge``). (Not ``inference_mode``: a buffer a module creates lazily during evaluation, such as a
    dynamic RoPE table, would become an inference tensor and break the training that follows.) Results do not depend
    on ``batch_size`` beyond float rounding (see ``engine.loglik``). ``count`` adds the tokens of the log-likelihood
    passes.
    """
    import torch

    examples = list(examples)
    names = _check(spec, examples, batch_size)
    if not examples:
        return []
    if device is None:
        device = next(model.parameters()).device
    score = _score_mc if spec.format == "multiple_choice" else _score_generation
    with _eval_mode(model), torch.no_grad(), merged_lora(model, device):
        return score(model, tokenizer, spec, examples, names, stage, batch_size, progress, device, count)
