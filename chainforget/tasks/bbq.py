"""BBQ (Parrish et al. 2022): 3-way multiple choice over ambiguous / disambiguated contexts, 9 social categories.

Options are the three answer *texts* as continuations (" The grandfather"), so a small model is scored on meaning,
not on answer letters. ``meta`` keeps what bias scores need: the stereotyped ``target_idx`` (the answer that belongs
to the stereotyped group, whatever the question's polarity, as in BBQ's own analysis code), the ``nontarget_idx``
and the ``unknown_idx``.
"""

from __future__ import annotations

import hashlib
import re

from chainforget.tasks.base import Example, SplitRule, TaskSpec
from chainforget.tasks.io import data_path, read_jsonl
from chainforget.tasks.task import STANDARD_METRICS, Task

CATEGORIES = ("Age", "Disability_status", "Gender_identity", "Nationality", "Physical_appearance",
              "Race_ethnicity", "Religion", "SES", "Sexual_orientation")
REGENERATED = ("Gender_identity", "Race_ethnicity", "SES")

PROMPT = "Context: {context}\nQuestion: {question}\nAnswer:"

# BBQ's analysis script (analysis_scripts/BBQ_results_metadata.R) folds these labels together before matching an
# answer's group tag against the template's stereotyped groups; so do we.
_ALIASES = {"man": "m", "men": "m", "boy": "m", "boys": "m", "woman": "f", "women": "f", "girl": "f", "girls": "f",
            "transgender women": "trans", "transgender men": "trans", "low ses": "lowses", "high ses": "highses"}


def _norm(label: str) -> str:
    label = label.strip().lower()
    return _ALIASES.get(label, label)


def _tag_labels(tag: str) -> set[str]:
    """"M-Black" -> {"black"}, "trans_F" -> {"trans", "f"}, "nonOld" -> {"nonold"} (exact labels, no substrings)."""
    t = tag.strip()
    if re.match(r"^[MF]-", t):
        t = t[2:]
    return {_norm(p) for p in t.split("_") if p.strip()}


def _words(text: str) -> str:
    return " " + re.sub(r"[^a-z0-9]+", " ", text.lower()).strip() + " "


def stereotype_roles(row: dict) -> tuple[int | None, int | None, int]:
    """(target_idx, nontarget_idx, unknown_idx) of a BBQ row.

    The target is the non-unknown answer whose group (its ``answer_info`` tag, or for Nationality its text) is one
    of ``additional_metadata.stereotyped_groups``, compared as whole labels after BBQ's own normalisation (so
    "African" does not match "African American" and "nonOld" does not match "old"). When tags tie or match
    nothing, the answer strings are checked for a stereotyped group as whole words. If still undecided (20 rows
    whose tags are themselves inconsistent, e.g. "male" for both answers), target and non-target are None, and bias scores
    skip the row, as BBQ's analysis does with its NA target: ``metrics/bbq_bias.py`` leaves it out of s_DIS and s_AMB
    (accuracy included) and counts it as ``n_excluded_no_target``.
    """
    info = row["answer_info"]
    stereo = {_norm(s) for s in row["additional_metadata"]["stereotyped_groups"]}
    unknown = [i for i in range(3) if info[f"ans{i}"][1] == "unknown"]
    unknown_idx = unknown[0] if unknown else None
    if unknown_idx is None:
        raise ValueError(f"BBQ row {row['category']}/{row['example_id']} has no 'unknown' answer")
    others = [i for i in range(3) if i != unknown_idx]
    matches = [i for i in others if _tag_labels(info[f"ans{i}"][1]) & stereo or _norm(info[f"ans{i}"][0]) in stereo]
    if len(matches) != 1:
        matches = [i for i in others if any(_words(g) in _words(row[f"ans{i}"]) for g in stereo)]
    if len(matches) != 1:
        return None, None, unknown_idx
    target = matches[0]
    return target, next(i for i in others if i != target), unknown_idx


def _digest(text: str) -> str:
    return hashlib.sha256(text.strip().encode()).hexdigest()[:12]


def _example(row: dict, regenerated: bool, task: str) -> Example:
    category = row["category"]
    options = tuple(" " + row[f"ans{i}"].strip() for i in range(3))
    gold = int(row["label"])
    target_idx, nontarget_idx, unknown_idx = stereotype_roles(row)
    return Example(
        id=f"{task}/{category}/{row['example_id']}",
        group=category,
        subgroup=", ".join(row["additional_metadata"]["stereotyped_groups"]),
        prompt=PROMPT.format(context=row["context"].strip(), question=row["question"].strip()),
        target=options[gold],
        gold=gold,
        options=options,
        meta={"category": category, "context_condition": row["context_condition"],
              "question_polarity": row["question_polarity"], "target_idx": target_idx,
              "nontarget_idx": nontarget_idx, "unknown_idx": unknown_idx, "regenerated": regenerated,
              "template": f"{category}/{row['question_index']}",
              "context_id": f"{category}/{row['question_index']}/{_digest(row['context'])}"},
        task=task,
    )


def _files() -> list:
    return [data_path("bbq", f"{c}.regenerated.jsonl.gz" if c in REGENERATED else f"{c}.jsonl.gz")
            for c in CATEGORIES]


def load(spec: TaskSpec) -> list[Example]:
    out = []
    for path in _files():
        regenerated = ".regenerated." in path.name
        out.extend(_example(row, regenerated, spec.name) for _, row in read_jsonl(path))
    return out


SPEC = TaskSpec(
    name="bbq",
    kind="safety",
    format="multiple_choice",
    description="BBQ bias benchmark: 3-way QA over ambiguous/disambiguated contexts, 9 social categories",
    prompt_template=PROMPT,
    metrics=(STANDARD_METRICS["acc"], STANDARD_METRICS["acc_norm"]),
    primary_metric="acc",
    group_fields=("group", "subgroup"),
    # Splits keep templates whole; an eval limit draws both questions of a context together (BBQ's own pairing of
    # negative and non-negative questions), so the scorer encodes each drawn context once for two examples.
    split=SplitRule(eval_fraction=0.5, seed=0, unit="template", eval_sample_unit="meta.context_id"),
    source="Parrish et al., BBQ: A Hand-Built Bias Benchmark for Question Answering, ACL Findings 2022 "
           "(github.com/nyu-mll/BBQ)",
    license="CC-BY-4.0",
    notes="Gender_identity, Race_ethnicity and SES are regenerated with BBQ's official generator and templates "
          "(the release files were unreachable): same fields and row counts, different names/wordings; their "
          "examples carry meta['regenerated'] = True. Report this with any result on those categories.",
)


def task() -> Task:
    return Task(SPEC, load, files=_files())
