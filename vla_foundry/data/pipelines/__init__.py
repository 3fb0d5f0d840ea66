"""Per-modality sample pipelines: decode a raw tar sample, process it, and collate processed items into a batch.

Each pipeline has `process(raw, dataset_index, rng) -> list of items` (empty while a packer fills up; raises
`SampleError` for an unusable sample) and `collate(items) -> batch`. `build_pipeline` picks one by `data.type`.
"""

from __future__ import annotations

from typing import Any

from vla_foundry.data.planner import CheckpointPlan
from vla_foundry.params.data_params import DataParams


def build_pipeline(
    data_params: DataParams,
    plan: CheckpointPlan,
    training: bool,
    model_params: Any = None,
    batch_size: int | None = None,
):
    """The pipeline for `data_params.type`, configured for the datasets of `plan`; `batch_size` (when known) lets
    the robotics pipeline decode images straight into the batch."""
    kind = data_params.type
    if kind in ("text", "text_untokenized"):
        from vla_foundry.data.pipelines.text import TextPipeline, UntokenizedTextPipeline

        return TextPipeline(data_params) if kind == "text" else UntokenizedTextPipeline(data_params)
    if kind == "image_caption":
        from vla_foundry.data.pipelines.image_caption import HFImageCaptionPipeline, ImageCaptionPipeline

        if data_params.processor is not None:
            return HFImageCaptionPipeline(data_params)
        return ImageCaptionPipeline(data_params, model_params)
    if kind == "robotics":
        from vla_foundry.data.pipelines.robotics import RoboticsPipeline
        from vla_foundry.data.streaming.source import is_stream, stream_dir

        # A streamed LeRobot root's layout and statistics live in its stream dir.
        dirs = [
            stream_dir(data_params, d.dataset_dir) if is_stream(d.modality) else d.dataset_dir for d in plan.datasets
        ]
        return RoboticsPipeline(data_params, dirs, training, batch_size)
    raise ValueError(f"no pipeline for data.type={kind!r}")
