"""The data package's part of the resolve step (`vla_foundry.params.resolve`): datasets' manifests and statistics,
streamed LeRobot roots, tokenizers, and a preprocessing job's converter, quality rules and input files.

Registered into the resolve step when imported (`vla_foundry.plugins.load_builtin_params` imports it), so that the
params package never imports the data package. The heavy modules load inside the methods.
"""

from __future__ import annotations

import os
from typing import Any

from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.data_params import STREAMED_MODALITIES, DataParams, ImageCaptionDataParams, RoboticsDataParams
from vla_foundry.params.model_params import VLMParams
from vla_foundry.params.resolve import DataReader, register_data_reader
from vla_foundry.params.train_experiment_params import TrainExperimentParams


class DatasetFiles(DataReader):
    """Reads datasets, tokenizers and preprocessing inputs for the resolve step."""

    def resolve_data(self, data: DataParams, save_path: str) -> tuple[DataParams, int]:
        from vla_foundry.data.manifest import read_manifest
        from vla_foundry.data.planner import dataset_manifest, dataset_sources

        if isinstance(data, RoboticsDataParams) and set(data.dataset_modality) & set(STREAMED_MODALITIES):
            from vla_foundry.data.streaming.registry import prepare_streams

            # A streamed LeRobot root gets its layout and statistics (cached beside the runs) before they are read.
            data = prepare_streams(data, save_path)
        paths, _, modalities = dataset_sources(data)
        num_samples = sum(dataset_manifest(data, p, m).num_samples for p, m in zip(paths, modalities))
        if data.val_dataset_manifest:
            for path in dataset_sources(data, split="val")[0]:
                read_manifest(path)
        if isinstance(data, RoboticsDataParams):
            from vla_foundry.data.robotics.processor import derive_robotics_data

            data = derive_robotics_data(data)
        return data, num_samples

    def check_tokenizer(self, params: TrainExperimentParams) -> None:
        """A native VLM's `model.image_token_id` must be the `<image>` id of `data.tokenizer`: the caption pipeline
        writes that id as the image placeholders, and the model puts image embeddings where it finds its own id."""
        from vla_foundry.data.processors.tokenizers import get_tokenizer

        model, data = params.model, params.data
        # With data.processor the placeholders are the processor's own (a vlm_hf setup): nothing to compare.
        if not isinstance(model, VLMParams) or not isinstance(data, ImageCaptionDataParams) or data.processor:
            return
        tokenizer_id = get_tokenizer(data.tokenizer).image_token_id
        if model.image_token_id != tokenizer_id:
            raise ConfigError(
                f"model.image_token_id={model.image_token_id} but data.tokenizer {data.tokenizer!r} gives <image> the "
                f"id {tokenizer_id} (the id the captions' image placeholders carry): set --model.image_token_id "
                f"{tokenizer_id}"
            )

    def check_preprocessing(self, params: Any) -> None:
        from vla_foundry.params.preprocessing_params import RoboticsPreprocessingParams

        if not isinstance(params, RoboticsPreprocessingParams):
            return
        from vla_foundry.data.preprocessing.episode_quality import check_rule_names
        from vla_foundry.data.preprocessing.episodes import get_converter
        from vla_foundry.plugins import load_plugins

        load_plugins(params.plugins, entry_points=False)  # plugins register converters, so they load first
        converter = get_converter(params.type)  # an unknown --type ends here, with the closest registered names
        for name, default in (("mapping_path", None), ("trust_pickle", False)):
            if getattr(params, name) != default and name not in converter.source_params:
                raise ConfigError(
                    f"{name} is not read by type={params.type}; remove it (it applies to hdf5, mcap, robodm)"
                )
        check_rule_names(params.qa_fail_on)
        for path_field in ("action_fields_config_path", "language_annotations_path", "mapping_path"):
            path = getattr(params, path_field)
            if path is not None and not path.startswith("s3://") and not os.path.isfile(path):
                raise ConfigError(f"{path_field}={path!r}: file not found")


register_data_reader(DatasetFiles())
