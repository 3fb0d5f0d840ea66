"""Robotics pipeline: the `RoboticsProcessor` applied to raw tar samples of the planned datasets.

Camera images are decoded straight into the batch they will be shipped in: the pipeline keeps a uint8
(batch_size, N, 3, H, W) buffer, sample b of a batch decodes its views into row b, and `collate` hands the full buffer
over as the batch's `images` without copying it. In a dataloader worker the buffer is allocated in shared memory, so
the batch also reaches the main process without the copy torch otherwise makes to share it. Whenever the rows of a
batch are not exactly one buffer in order (a batch size the buffer was not made for, augmented samples), `collate`
copies as before, so the batches are the same either way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

from vla_foundry.data.pipelines import register_pipeline
from vla_foundry.data.robotics.processor import DeferredSample, RoboticsProcessor


def _new_image_buffer(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised uint8 tensor; in shared memory inside a dataloader worker (as torch's own collate does).

    In the main process the memory comes from numpy, whose allocator hands a freed batch's pages back to the next
    buffer (torch's CPU allocator maps fresh pages for each large tensor, and faulting them in costs a noticeable
    share of the loader's time)."""
    if get_worker_info() is None:
        return torch.from_numpy(np.empty(shape, dtype=np.uint8))
    like = torch.empty(0, dtype=torch.uint8)
    storage = like._typed_storage()._new_shared(int(np.prod(shape)), device="cpu")
    return like.new(storage).view(shape)


class RoboticsPipeline:
    """Raw robotics samples -> `DeferredSample`s (images decoded into the batch buffer) -> batches."""

    def __init__(
        self, data_params: Any, dataset_dirs: list[str], training: bool, batch_size: int | None = None
    ) -> None:
        # Stats are merged over the training datasets (also for validation), so both see one normalisation.
        self.processor = RoboticsProcessor.from_data_params(data_params)
        # The JPEG decoder of `decode_planar`, imported by the loader process that builds a pipeline before it forks
        # each checkpoint interval's workers: they inherit it instead of importing torchvision again (seconds on a busy CPU).
        import torchvision.io  # noqa: F401

        self.dataset_dirs = dataset_dirs
        self.training = training
        self.batch_size = batch_size
        self._view_shape = self.processor.view_shape  # (3, H, W); learnt from the first sample when unset
        self._buffer: torch.Tensor | None = None  # (batch_size, N, 3, H, W) the next samples decode into
        self._rows: list[np.ndarray] = []  # numpy views of the buffer's rows, (N, 3, H, W) each
        self._filled = 0

    def _next_row(self) -> np.ndarray | None:
        if self.batch_size is None or self._view_shape is None:
            return None
        if self._buffer is None or self._filled == len(self._rows):
            self._buffer = _new_image_buffer((self.batch_size, self.processor.config.num_images, *self._view_shape))
            self._rows = list(self._buffer.numpy())
            self._filled = 0
        return self._rows[self._filled]

    def process(self, raw: dict[str, Any], dataset_index: int, rng: np.random.Generator) -> list[DeferredSample]:
        dataset_dir = self.dataset_dirs[dataset_index]
        row = self._next_row()
        item = self.processor.process_sample(raw, dataset_dir, rng, self.training, deferred=True, image_out=row)
        if row is not None:
            # The row is this sample's (even if a view of odd size left it partly unused): never written again.
            self._filled += 1
        elif self._view_shape is None and isinstance(item.images, list):
            # No view at all (a policy without cameras) keeps the (3, 1, 1) placeholder of an empty image stack.
            self._view_shape = next((v.shape for v in item.images if v is not None), (3, 1, 1))
        return [item]

    def collate(self, items: list[DeferredSample]) -> dict[str, Any]:
        rows = self._rows
        if len(items) == len(rows) and all(item.images is row for item, row in zip(items, rows)):
            # The batch is exactly the buffer, row by row: hand it over and start a new one for the next samples.
            images, self._buffer, self._rows = self._buffer, None, []
            return self.processor.collate(items, images=images)
        return self.processor.collate(items)


@register_pipeline("robotics")
def build_robotics_pipeline(
    data_params: Any, plan: Any, training: bool, model_params: Any, batch_size: int | None
) -> RoboticsPipeline:
    from vla_foundry.data.streaming.registry import layout_dir

    # A streamed source root's layout and statistics live in its layout dir; a shard dataset's in its own dir.
    dirs = [layout_dir(data_params, d.dataset_dir, d.modality) for d in plan.datasets]
    return RoboticsPipeline(data_params, dirs, training, batch_size)
