"""Launchers that run training on a cluster manager (Ray Train); `torchrun` and SageMaker need none."""
