"""vla_foundry: train an LLM, a VLM from it, and a vision-language-action policy from that, in one framework."""

__version__ = "0.1.0"
