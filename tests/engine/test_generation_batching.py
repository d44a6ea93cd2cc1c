"""Continuous batching in greedy generation: rows leave when they stop, waiting prompts take their slots, and every
prompt still gets exactly what it gets when generated alone."""

import torch
from test_scoring import sharpen

from chainforget.engine import generation
from chainforget.engine.generation import greedy_generate

PROMPTS = ["Question: what is 2+2?\nAnswer:", "Hi", "x = 5; y =", "Natalia sold clips to 48 of her friends in April",
           "A", "The cat sat on the", "Question: 17 apples, 5 eaten. Left?\nAnswer:", "1, 2, 3,", "zebra"]


def test_rows_that_stop_early_are_replaced_and_results_equal_unbatched(tiny_model, monkeypatch):
    model, tok = tiny_model
    sharpen(model)
    with torch.inference_mode():
        free = [greedy_generate(model, tok, [p], max_new_tokens=14, stop=[], batch_size=1)[0] for p in PROMPTS]
    # stop strings taken from different steps of different rows, so rows finish at different times
    stop = sorted({tok.decode([g.token_ids[2 + i % 9]]) for i, g in enumerate(free[:4])} - {""}, key=len)[-2:]
    with torch.inference_mode():
        single = [greedy_generate(model, tok, [p], max_new_tokens=14, stop=stop, batch_size=1)[0] for p in PROMPTS]
    assert len({len(g.token_ids) for g in single}) >= 3  # the test needs rows that stop at different steps
    prefills = []
    original = generation._prefill
    monkeypatch.setattr(generation, "_prefill", lambda m, ids, *a: prefills.append(len(ids)) or original(m, ids, *a))
    finished = []
    with torch.inference_mode():
        batched = greedy_generate(model, tok, PROMPTS, max_new_tokens=14, stop=stop, batch_size=4,
                                  on_batch=finished.append)
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]
    assert [g.text for g in batched] == [g.text for g in single]
    assert len(prefills) >= 3 and sum(prefills) == len(PROMPTS)  # the free slots were refilled
    assert sum(finished) == len(PROMPTS)


def test_zero_new_tokens_gives_empty_generations(tiny_model):
    model, tok = tiny_model
    with torch.inference_mode():
        outs = greedy_generate(model, tok, PROMPTS[:3], max_new_tokens=0, stop=[], batch_size=2)
    assert [(g.text, g.token_ids) for g in outs] == [("", ())] * 3


def test_draft_is_the_continuation_of_the_latest_matching_ngram():
    assert generation.draft([5, 6, 7, 8, 1, 5, 6], 3) == [7, 8, 1]
    assert generation.draft([1, 2, 9, 1, 2, 3, 1, 2], 2) == [3, 1]  # the latest earlier occurrence wins
    assert generation.draft([1, 2, 3, 4], 3) == [] and generation.draft([7], 3) == []


def test_speculative_tail_keeps_the_greedy_output(tiny_model, monkeypatch):
    model, tok = tiny_model
    sharpen(model)  # a sharpened random model loops, so drafts from its own text get accepted
    with torch.inference_mode():
        monkeypatch.setattr(generation, "SPECULATE_ROWS", 0)
        plain = greedy_generate(model, tok, PROMPTS, max_new_tokens=24, stop=[], batch_size=4)
        monkeypatch.setattr(generation, "SPECULATE_ROWS", 4)
        widths = []
        original = generation.draft
        monkeypatch.setattr(generation, "draft", lambda seq, k: widths.append(len(d := original(seq, k))) or d)
        fast = greedy_generate(model, tok, PROMPTS, max_new_tokens=24, stop=[], batch_size=4)
    assert [g.token_ids for g in fast] == [g.token_ids for g in plain]
    assert all(len(g.token_ids) == 24 for g in fast)
    assert sum(w > 0 for w in widths) >= 3  # drafts were proposed and verified, not skipped
