"""hf:ORG/NAME[@REV] ids against a Hub-layout cache built from the tiny model in a tmp dir (HF_HUB_OFFLINE=1:
nothing is downloaded), remote code only when asked, and chat-formatted prompts for training and scoring."""

import json
import os

import pytest
import torch

from chainforget.engine import hub
from chainforget.errors import ModelError

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture()
def hub_cache(tmp_path, monkeypatch, tiny_model):
    """``models--acme--tiny-chat/{refs/main, snapshots/<commit>/...}`` as huggingface_hub writes it (blobs inlined)."""
    model, tok = tiny_model
    repo = tmp_path / "hub" / "models--acme--tiny-chat"
    snap = repo / "snapshots" / COMMIT
    model.save_pretrained(str(snap), safe_serialization=True)
    tok.save_pretrained(str(snap))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return repo, model


def test_parse_hub_ids():
    assert hub.parse("hf:acme/tiny-chat") == hub.HubId("acme/tiny-chat", "main")
    assert hub.parse("hf:acme/tiny-chat@v1.0") == hub.HubId("acme/tiny-chat", "v1.0")
    assert str(hub.parse("hf:acme/x@" + COMMIT)) == "hf:acme/x@" + COMMIT
    for bad in ("hf:tiny", "hf:acme/", "hf:acme/x@", "hf:/x", "hf:a/b/c"):
        with pytest.raises(ModelError, match="is not a Hub model id; write hf:ORG/NAME"):
            hub.parse(bad)


def test_hub_model_loads_offline_from_the_cache_and_is_fingerprinted_by_commit(hub_cache):
    from chainforget.engine.models import load_model, resolve_model

    _, model = hub_cache
    spec = resolve_model("hf:acme/tiny-chat")
    assert spec.fingerprint() == COMMIT
    loaded, tok = load_model(spec, dtype=torch.bfloat16)
    assert loaded.lm_head.weight.dtype == torch.bfloat16
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight.to(torch.bfloat16))
    assert tok.chat_template  # the SmolLM2 tokenizer carries one
    assert resolve_model("hf:acme/tiny-chat@main").fingerprint() == COMMIT
    assert resolve_model(f"hf:acme/tiny-chat@{COMMIT}").fingerprint() == COMMIT


def test_a_moved_branch_is_a_new_fingerprint(hub_cache):
    from chainforget.engine.models import resolve_model

    repo, _ = hub_cache
    (repo / "snapshots" / COMMIT).rename(repo / "snapshots" / OTHER)
    (repo / "refs" / "main").write_text(OTHER)
    assert resolve_model("hf:acme/tiny-chat").fingerprint() == OTHER


def test_missing_from_the_offline_cache_is_one_line(hub_cache):
    from chainforget.engine.models import load_model, resolve_model

    with pytest.raises(ModelError) as info:
        load_model(resolve_model("hf:acme/not-there"))
    msg = str(info.value)
    assert "not in the Hugging Face cache" in msg and "HF_HUB_OFFLINE is set" in msg
    assert "hf download acme/not-there" in msg and "\n" not in msg
    with pytest.raises(ModelError, match="--revision v9"):
        resolve_model("hf:acme/tiny-chat@v9").fingerprint()


def test_remote_code_runs_only_with_the_flag(hub_cache):
    """A config that names custom code: refused without trust_remote_code (before any of it runs)."""
    from chainforget.engine.models import load_model, resolve_model

    repo, _ = hub_cache
    snap = repo / "snapshots" / COMMIT
    cfg = json.loads((snap / "config.json").read_text())
    cfg["model_type"] = "evil-llm"  # unknown to transformers: only its own code could build it
    cfg["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (snap / "config.json").write_text(json.dumps(cfg))
    marker = repo.parent / "ran"
    (snap / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    with pytest.raises(ModelError) as info:
        load_model(resolve_model("hf:acme/tiny-chat"))
    assert "--trust-remote-code" in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def test_nothing_is_downloaded_in_tests():
    assert os.environ.get("HF_HUB_OFFLINE") == "1" and hub.offline()


# ---------------------------------------------------------------------------------------------- chat templates
def test_chat_prompt_wraps_one_user_turn(tokenizer):
    from chainforget.engine.chat import chat_prompt

    text = chat_prompt(tokenizer, "Is a plum a fruit?")
    assert text.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\nIs a plum a fruit?<|im_end|>" in text


class _BosTokenizer:
    """A Llama-3-like tokenizer: its template writes BOS; ``adds_bos`` says whether encoding adds one too."""

    bos_token, bos_token_id = "<s>", 5

    def __init__(self, adds_bos):
        self.adds_bos = adds_bos

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert not tokenize and add_generation_prompt and messages == [{"role": "user", "content": "hi"}]
        return "<s>[USER]hi[/USER][ASSISTANT]"

    def __call__(self, text):
        return {"input_ids": ([5] if self.adds_bos else []) + [9] * len(text)}


def test_chat_prompt_drops_a_bos_the_tokenizer_adds_itself():
    from chainforget.engine.chat import chat_prompt

    assert chat_prompt(_BosTokenizer(adds_bos=True), "hi") == "[USER]hi[/USER][ASSISTANT]"
    assert chat_prompt(_BosTokenizer(adds_bos=False), "hi") == "<s>[USER]hi[/USER][ASSISTANT]"


def test_chat_task_formats_train_and_eval_examples_and_keeps_identity(tokenizer):
    from chainforget.engine.chat import ChatTask, chat_prompt, check
    from chainforget.tasks import resolve_task

    task = resolve_task("bbq")
    chat = ChatTask(task, tokenizer)
    assert chat.name == "bbq" and chat.spec is task.spec and chat.fingerprint() == task.fingerprint()
    for mine, theirs in ((chat.train_examples(5), task.train_examples(5)), (chat.eval_examples(5),
                                                                             task.eval_examples(5))):
        assert [e.id for e in mine] == [e.id for e in theirs]
        assert [e.prompt for e in mine] == [chat_prompt(tokenizer, e.prompt) for e in theirs]
        assert [(e.target, e.options, e.gold) for e in mine] == [(e.target, e.options, e.gold) for e in theirs]
    assert task.eval_examples(5)[0].prompt != chat.eval_examples(5)[0].prompt  # the plain task is untouched
    configured = chat.configure(primary_metric="acc")
    assert isinstance(configured, ChatTask)
    no_template = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    no_template.chat_template = None
    with pytest.raises(ModelError, match="has no chat template; drop --chat-template"):
        check(no_template, "m")


def test_training_and_scoring_read_the_same_chat_tokens(tokenizer):
    """The token ids the trainer gives the prompt are the ids the scorer conditions on."""
    from chainforget.engine.chat import ChatTask
    from chainforget.engine.collate import encode_examples
    from chainforget.engine.loglik import encode_requests
    from chainforget.tasks import resolve_task

    exs = ChatTask(resolve_task("bbq"), tokenizer).eval_examples(4)
    enc = encode_examples(tokenizer, exs, 4096)
    reqs = encode_requests(tokenizer, [e.prompt for e in exs], [[e.target] for e in exs])
    for e, r in zip(enc, reqs):
        assert list(e.input_ids[:e.n_prompt]) == r.ctx
        assert list(e.input_ids[e.n_prompt:-1]) == r.conts[0]  # the trainer appends EOS
        assert tokenizer.convert_tokens_to_ids("<|im_start|>") in r.ctx
