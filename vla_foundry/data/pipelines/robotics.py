"""Robotics pipeline: the `RoboticsProcessor` applied to raw tar samples of the planned datasets."""

from __future__ import annotations

from typing import Any

import numpy as np

from vla_foundry.data.robotics.processor import RoboticsProcessor


class RoboticsPipeline:
    def __init__(self, data_params: Any, dataset_dirs: list[str], training: bool) -> None:
        # Stats are merged over the training datasets (also for validation), so both see one normalisation.
        self.processor = RoboticsProcessor.from_data_params(data_params)
        self.dataset_dirs = dataset_dirs
        self.training = training

    def process(self, raw: dict[str, Any], dataset_index: int, rng: np.random.Generator) -> list[dict]:
        dataset_dir = self.dataset_dirs[dataset_index]
        return [self.processor.process_sample(raw, dataset_dir, rng, self.training, defer_images=True)]

    def collate(self, items: list[dict]) -> dict[str, Any]:
        return self.processor.collate(items)
