"""Processors turn decoded samples into model-ready tensors (tokenizers, image and robotics processing)."""
