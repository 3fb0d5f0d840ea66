"""Inference: load a run (local or s3://), generate text, caption images, and run robot policies.

    from vla_foundry.inference import load_run, generate_text, caption_image, Policy

    generate_text(load_run("experiments/llm"), "Once upon a time")
    caption_image(load_run("experiments/vlm"), image_uint8_hwc)
    Policy.from_run("experiments/vla").predict(observation)    # denormalised action chunk

`policy_server` serves a policy over HTTP for robot clients; `open_loop_eval` compares predicted and recorded
action chunks on a dataset.
"""

from vla_foundry.inference.generation import caption_image, generate_text
from vla_foundry.inference.policy import Policy
from vla_foundry.inference.policy_server import PolicyClient, PolicyServer
from vla_foundry.inference.run_loading import LoadedRun, load_run

__all__ = ["LoadedRun", "Policy", "PolicyClient", "PolicyServer", "caption_image", "generate_text", "load_run"]
