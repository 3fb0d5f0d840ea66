"""Per-modality sample pipelines: decode a raw tar sample, process it, and collate processed items into a batch.

Each pipeline has `process(raw, dataset_index, rng) -> list of items` (empty while a packer fills up; raises
`SampleError` for an unusable sample) and `collate(items) -> batch`. A pipeline is chosen by `data.type` through a
registry: a builder function registered with `@register_pipeline("type")` makes it from the data params and the
window's plan. The built-in ones are imported on first use (each pulls in its own processors).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vla_foundry.data.planner import CheckpointPlan
from vla_foundry.data.registry import Registry
from vla_foundry.params.data_params import DataParams

# (data_params, plan, training, model_params, batch_size) -> pipeline
PipelineBuilder = Callable[[DataParams, CheckpointPlan, bool, Any, "int | None"], Any]

BUILTIN_PIPELINES: dict[str, str] = {
    "text": "vla_foundry.data.pipelines.text",
    "text_untokenized": "vla_foundry.data.pipelines.text",
    "image_caption": "vla_foundry.data.pipelines.image_caption",
    "robotics": "vla_foundry.data.pipelines.robotics",
}

_BUILDERS: Registry[PipelineBuilder] = Registry(
    "pipeline", BUILTIN_PIPELINES, "no pipeline for data.type={name}{hint}; valid: {valid}"
)


def register_pipeline(data_type: str) -> Callable[[PipelineBuilder], PipelineBuilder]:
    """Decorator: make a builder function the pipeline maker of `data.type == data_type`."""

    def decorate(builder: PipelineBuilder) -> PipelineBuilder:
        _BUILDERS.register(data_type, builder)
        return builder

    return decorate


def build_pipeline(
    data_params: DataParams,
    plan: CheckpointPlan,
    training: bool,
    model_params: Any = None,
    batch_size: int | None = None,
):
    """The pipeline for `data_params.type`, configured for the datasets of `plan`; `batch_size` (when known) lets
    the robotics pipeline decode images straight into the batch."""
    return _BUILDERS.get(data_params.type)(data_params, plan, training, model_params, batch_size)
