"""The checkpoint tests share the training tests' fixtures (a single-process context, tiny datasets, runs)."""

from tests.training.conftest import cpu_ctx, llm_run, tiny_datasets

__all__ = ["cpu_ctx", "llm_run", "tiny_datasets"]
