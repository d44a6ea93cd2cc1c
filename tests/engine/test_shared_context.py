"""Context sharing across examples in MC scoring: the packed token tree computes what unshared rows compute."""

import random

import pytest
import torch
from test_scoring import WORDS, mc_spec, naive_logliks

from chainforget.engine.loglik import Request, encode_requests, score_requests
from chainforget.engine.scoring import score_examples
from chainforget.engine.shared_context import attention_allowed, group_requests, pack
from chainforget.tasks.base import Example


def shared_context_examples(n_contexts, seed=0):
    """BBQ-shaped: each context gets two questions, and an extended (disambiguated) copy gets two more."""
    rng = random.Random(seed)
    out = []
    for c in range(n_contexts):
        ambig = " ".join(rng.choice(WORDS) for _ in range(rng.randint(18, 40)))
        disambig = ambig + ". " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
        for v, context in enumerate((ambig, disambig)):
            for q in ("Who was not comfortable?", "Who was comfortable?"):
                k = rng.randint(2, 4)
                opts = tuple(" " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))) for _ in range(k))
                out.append(Example(id=f"mc/{c}/{v}/{q[4]}", group=rng.choice("AB"), target=opts[0],
                                   gold=rng.randrange(k), options=opts,
                                   prompt=f"Context: {context}\nQuestion: {q}\nAnswer:"))
    rng.shuffle(out)  # shared contexts arrive apart, as in a subsample: the scorer must find them
    return out


def test_shared_context_examples_match_unshared_reference(tiny_model):
    model, tok = tiny_model
    exs = shared_context_examples(3, seed=1)
    recs = score_examples(model, tok, mc_spec(), exs, batch_size=4)
    for ex, rec in zip(exs, recs):
        ref = naive_logliks(model, tok, ex.prompt, ex.options)
        assert rec["option_logliks"] == pytest.approx(ref, abs=1e-4)
        assert rec["pred"] == max(range(len(ref)), key=lambda i: ref[i])


def test_examples_sharing_a_context_share_one_row(tokenizer):
    exs = shared_context_examples(5, seed=2)
    requests = encode_requests(tokenizer, [e.prompt for e in exs], [list(e.options) for e in exs])
    groups = group_requests(requests)
    contexts = [e.id.split("/")[1] for e in exs]
    assert len(groups) == 5 and all(len({contexts[i] for i in g}) == 1 for g in groups)
    for g in groups:
        row = pack([requests[i] for i in g])
        unshared = sum(len(requests[i].ctx) + sum(len(c) for c in requests[i].conts) for i in g)
        assert row.length < 0.6 * unshared  # the context (and the ambiguous part of the extended one) runs once


def ancestors(row, q):
    """Row indices that token q attends to, from the packed layout (k <= q < end[k])."""
    return [k for k in range(q + 1) if q < row.end[k]]


def test_pack_gives_every_prediction_exactly_its_own_sequence():
    rng = random.Random(3)
    stems = [[rng.randrange(50) for _ in range(rng.randint(1, 12))] for _ in range(3)]
    requests = []
    for _ in range(12):
        ctx = rng.choice(stems)[: rng.randint(1, 12)] + [rng.randrange(50) for _ in range(rng.randint(0, 4))]
        conts = [[rng.randrange(50) for _ in range(rng.randint(0, 4))] for _ in range(rng.randint(1, 3))]
        requests.append(Request(ctx or [0], conts))
    row = pack(requests)
    assert row.length < sum(r.length for r in requests)
    allowed = attention_allowed(row.end, row.length + 2)
    assert not allowed[:row.length, row.length:].any() and allowed[row.length:, row.length:].equal(torch.eye(2) > 0)
    seen = {}
    for p, tok, r, c in row.preds:
        req = requests[r]
        j = seen[(r, c)] = seen.get((r, c), -1) + 1
        path = ancestors(row, p)
        assert [row.ids[k] for k in path] == req.ctx + req.conts[c][:j]  # reads exactly ctx + earlier tokens
        assert [row.pos[k] for k in path] == list(range(len(path)))  # positions are depths
        assert allowed[p].nonzero().flatten().tolist() == path
        assert tok == req.conts[c][j]
    assert {(r, c): n + 1 for (r, c), n in seen.items()} == {
        (r, c): len(cont) for r, req in enumerate(requests) for c, cont in enumerate(req.conts) if cont}


def test_shared_context_scores_do_not_depend_on_batch_size(tiny_model):
    model, tok = tiny_model
    exs = shared_context_examples(4, seed=4)
    requests = encode_requests(tok, [e.prompt for e in exs], [list(e.options) for e in exs])
    with torch.no_grad():
        runs = [score_requests(model, requests, batch_size=b, pad_id=tok.pad_token_id, device="cpu")
                for b in (1, 3, 64)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert [n for _, n in a] == [n for _, n in b]
            assert [s for s, _ in a] == pytest.approx([s for s, _ in b], abs=1e-5)
