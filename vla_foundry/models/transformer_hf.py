"""`transformer_hf`: any `transformers` causal LM (Llama, Qwen2, SmolLM, ...) by hub name or local directory.

The wrapper gives it the same interface as the native `TransformerLM` (`forward -> logits`, `embed`,
`hidden_states`, `generate`), so the VLM and the VLA can use either as their language model.
`load_pretrained=False` builds the architecture from its config with fresh weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vla_foundry.models.flops import approx_forward_flops_per_token
from vla_foundry.models.hf_loading import load_hf_model, no_split_block_types
from vla_foundry.models.language_modeling import LanguageModelBatchHandler
from vla_foundry.models.registry import register_batch_handler, register_model
from vla_foundry.models.sampling import hf_generate_options
from vla_foundry.params.model_params import TransformerHFParams


def last_layer_states(states: tuple[torch.Tensor, ...], num_layers: int, model_name: str) -> list[torch.Tensor]:
    """The last `num_layers` entries of a transformers `hidden_states` output, each (B, T, D).

    transformers returns the embeddings first, then every decoder layer's output, the final norm applied to the last.
    """
    n_layers = len(states) - 1
    if not 1 <= num_layers <= n_layers:
        raise ValueError(f"num_layers={num_layers} must be within [1, {n_layers}] (the layers of {model_name})")
    return list(states[-num_layers:])


class HFCausalLM(nn.Module):
    """A transformers causal LM behind the native `TransformerLM` interface."""

    def __init__(self, params: TransformerHFParams, load_pretrained: bool = True) -> None:
        super().__init__()
        from transformers import AutoModelForCausalLM

        params.validate()
        self.params = params
        options: dict[str, Any] = {"trust_remote_code": params.trust_remote_code}
        if params.attn_implementation:
            options["attn_implementation"] = params.attn_implementation
        self.model = load_hf_model(AutoModelForCausalLM, params.hf_pretrained, "causal LM", load_pretrained, **options)
        self.hidden_dim = self.model.config.get_text_config().hidden_size
        self.vocab_size = self.model.config.get_text_config().vocab_size

    def fsdp_block_types(self) -> tuple[type, ...]:
        return no_split_block_types(self.model)

    def forward_flops_per_token(self, seq_len: int) -> float:
        """Approximate forward FLOPs per token: 2 x parameters outside the input embeddings (no attention term)."""
        return approx_forward_flops_per_token(self)

    def flops_per_token(self, seq_len: int) -> float:
        """Approximate training FLOPs per token: 6 x parameters outside the input embeddings (no attention term)."""
        return 3.0 * self.forward_flops_per_token(seq_len)

    def flops_per_sample(self, seq_len: int, num_images: int = 0) -> float:
        """Approximate training FLOPs for one sequence of `seq_len` tokens (`num_images` is not read)."""
        return self.flops_per_token(seq_len) * seq_len

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(input_ids)  # (B, T, D)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, vocab). `attention_mask` (B, T) True on real tokens."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids or inputs_embeds")
        out = self.model(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask.long() if attention_mask is not None else None,
            use_cache=False,
        )
        return out.logits

    def hidden_states(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        num_layers: int = 1,
    ) -> list[torch.Tensor]:
        """Outputs of the last `num_layers` decoder layers, each (B, T, D); the last one after the final norm."""
        base = self.model.get_decoder() if hasattr(self.model, "get_decoder") else self.model.base_model
        out = base(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask.long() if attention_mask is not None else None,
            output_hidden_states=True,
            use_cache=False,
        )
        return last_layer_states(out.hidden_states, num_layers, self.params.hf_pretrained)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        max_new_tokens: int = 32,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **sampling: Any,
    ) -> torch.Tensor:
        """Same contract as `TransformerLM.generate`: returns the new tokens only, (B, <= max_new_tokens).
        `sampling`: temperature, top_k, top_p, eos_token_id (transformers samples from the global RNG, so a
        `generator` is ignored)."""
        sampling.pop("generator", None)
        sampling.pop("use_cache", None)
        out = self.model.generate(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask.long() if attention_mask is not None else None,
            **hf_generate_options(max_new_tokens, **sampling),
        )
        # With input_ids the prompt is echoed back; with inputs_embeds only new tokens are returned.
        return out[:, input_ids.shape[1] :] if input_ids is not None else out


@register_model("transformer_hf")
def build_transformer_hf(params: TransformerHFParams, load_pretrained: bool = True) -> HFCausalLM:
    return HFCausalLM(params, load_pretrained)


@register_batch_handler("transformer_hf")
class TransformerHFBatchHandler(LanguageModelBatchHandler):
    """Next-token cross-entropy on text batches (see `language_modeling`)."""
