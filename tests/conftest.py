"""Shared test setup: offline by force, a session-wide tiny model and tokenizer."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer():
    from chainforget.engine.models import load_tokenizer

    return load_tokenizer()


@pytest.fixture()
def tiny_model():
    """A fresh tiny model (seed 0) and tokenizer for each test that trains it."""
    from chainforget.engine.models import load_tiny

    return load_tiny(seed=0)


# Process-level tests (real subprocesses: `accelerate launch`, SIGKILL schedules, pip installs, Ray) are the slowest
# part of the suite. `make test` (and CI) runs them too; `make test-fast` leaves them out for a quick local loop.
PROCESS_MODULES = {"test_distributed.py", "test_reliability_processes.py", "test_plugin_example_install.py",
                   "test_ray_launcher.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in PROCESS_MODULES:
            item.add_marker(pytest.mark.process)
