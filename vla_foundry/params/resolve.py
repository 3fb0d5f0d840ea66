"""The resolve step: the checks and derived values that need files, run once after parsing and before anything is
built.

Parsing (`parse_train_params`) reads only the config files. This step reads what the config names: a policy's
backbone run (local or s3), the datasets' manifests, preprocessing_config.yaml and stats.json, and the tokenizer
(a transformers tokenizer loads its files). It returns new params with every data-derived value filled (robotics
dims, window and cameras, the budget of a `num_epochs` run, a backbone taken from its run), so that
`--resolve_configs True` prints exactly what a run would use. Its errors are one line naming the field and what is
valid.
"""

from __future__ import annotations

import dataclasses

from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.train_experiment_params import TrainExperimentParams, init_shared_attributes


def resolve_params(params: TrainExperimentParams) -> TrainExperimentParams:
    """New params with the file-dependent values resolved and checked (see the module docstring)."""
    from vla_foundry.data.manifest import read_manifest
    from vla_foundry.data.planner import dataset_manifest, dataset_sources
    from vla_foundry.params.data_params import STREAMED_MODALITIES, RoboticsDataParams

    model = params.model.resolve_files()
    data = params.data
    if isinstance(data, RoboticsDataParams) and set(data.dataset_modality) & set(STREAMED_MODALITIES):
        from vla_foundry.data.streaming.registry import prepare_streams

        # A streamed source root gets its layout and statistics (cached beside the runs) before they are read.
        data = prepare_streams(data, params.save_path)
    # Every manifest is read now, before a run dir exists: a wrong dataset path fails in seconds, naming it.
    paths, _, modalities = dataset_sources(data)
    dataset_num_samples = sum(dataset_manifest(data, p, m).num_samples for p, m in zip(paths, modalities))
    if data.val_dataset_manifest:
        for path in dataset_sources(data, split="val")[0]:
            read_manifest(path)
    if isinstance(data, RoboticsDataParams):
        from vla_foundry.data.robotics.processor import derive_robotics_data

        data = derive_robotics_data(data)
    resolved = init_shared_attributes(
        dataclasses.replace(params, model=model, data=data),
        dataset_num_samples=dataset_num_samples if params.num_epochs is not None else None,
        resolved=True,
    )
    check_tokenizers(resolved)
    return resolved


def check_tokenizers(params: TrainExperimentParams) -> None:
    """The model's special token ids against `data.tokenizer` (a mismatch would only fail at the first step, or
    silently put image embeddings in the wrong places). A tokenizer that cannot be loaded is one ConfigError."""
    try:
        params.model.check_data(params.data)
        check_image_token_id(params)
    except OSError as e:
        tokenizer = getattr(params.data, "tokenizer", None)
        raise ConfigError(f"data.tokenizer={tokenizer!r} cannot be loaded: {_first_line(str(e))}") from None


def check_image_token_id(params: TrainExperimentParams) -> None:
    """A native VLM's `model.image_token_id` must be the `<image>` id of `data.tokenizer`: the caption pipeline
    writes that id as the image placeholders, and the model puts image embeddings where it finds its own id."""
    from vla_foundry.data.processors.tokenizers import get_tokenizer
    from vla_foundry.params.data_params import ImageCaptionDataParams
    from vla_foundry.params.model_params import VLMParams

    model, data = params.model, params.data
    # With data.processor the placeholders are the processor's own (a vlm_hf setup): nothing to compare.
    if not isinstance(model, VLMParams) or not isinstance(data, ImageCaptionDataParams) or data.processor:
        return
    tokenizer_id = get_tokenizer(data.tokenizer).image_token_id
    if model.image_token_id != tokenizer_id:
        raise ConfigError(
            f"model.image_token_id={model.image_token_id} but data.tokenizer {data.tokenizer!r} gives <image> the id "
            f"{tokenizer_id} (the id the captions' image placeholders carry): set --model.image_token_id {tokenizer_id}"
        )


def _first_line(message: str) -> str:
    lines = message.strip().splitlines()
    return lines[0] if lines else message
