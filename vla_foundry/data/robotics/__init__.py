"""Robotics data: statistics (stats.json), normalisation, and the processor from raw windows to model tensors."""
