"""`diffusion_policy`: a flow-matching / diffusion action head over a vision(-language) backbone.

One folder holds the whole model type: `params.py` (its params, registered as `--model.type diffusion_policy`),
`model.py` (the network, its factory and batch handler), `backbones.py` (the backbone adapters),
`noise_schedulers.py` and `resolve.py` (the file reads of the resolve step). Importing this package imports nothing
heavy; the model registry imports `model.py` when a model is built.
"""
