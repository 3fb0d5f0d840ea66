"""Frozen params dataclasses, parsed by draccus from YAML presets and CLI flags.

A model type kept in a folder of its own has its params beside it (`vla_foundry.models.diffusion_policy.params.
DiffusionPolicyParams`); they register here when parsing starts (`vla_foundry.plugins.load_builtin_params`).
"""

from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.data_params import (
    AugmentationParams,
    DataParams,
    ImageCaptionDataParams,
    NormalizationParams,
    RoboticsDataParams,
    TextDataParams,
    TextUntokenizedDataParams,
    register_data_params,
)
from vla_foundry.params.distributed_params import DistributedParams
from vla_foundry.params.ema_params import EMAParams
from vla_foundry.params.hyper_params import HyperParams
from vla_foundry.params.model_params import (
    ActionSpec,
    ModelParams,
    PolicyParams,
    TransformerHFParams,
    TransformerParams,
    ViTHFParams,
    ViTParams,
    VLMHFParams,
    VLMParams,
    register_model_params,
)
from vla_foundry.params.parsing import (
    load_params_from_yaml,
    params_to_yaml,
    parse_params,
    parse_train_params,
    save_params,
)
from vla_foundry.params.train_experiment_params import (
    TrainExperimentParams,
    derive_params,
    validate_params,
)

__all__ = [
    "ActionSpec",
    "AugmentationParams",
    "ConfigError",
    "DataParams",
    "DistributedParams",
    "EMAParams",
    "HyperParams",
    "ImageCaptionDataParams",
    "ModelParams",
    "NormalizationParams",
    "PolicyParams",
    "RoboticsDataParams",
    "TextDataParams",
    "TextUntokenizedDataParams",
    "TrainExperimentParams",
    "TransformerHFParams",
    "TransformerParams",
    "VLMHFParams",
    "VLMParams",
    "ViTHFParams",
    "ViTParams",
    "derive_params",
    "load_params_from_yaml",
    "params_to_yaml",
    "parse_params",
    "parse_train_params",
    "register_data_params",
    "register_model_params",
    "save_params",
    "validate_params",
]
