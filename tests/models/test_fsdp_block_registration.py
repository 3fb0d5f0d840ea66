"""A model type's FSDP units: `FSDPBlock` subclasses, block classes registered with `@register_fsdp_block`, or the
model's own `fsdp_block_types()`."""

from __future__ import annotations

from torch import nn

from vla_foundry.models import FSDPBlock, fsdp_block_types, register_fsdp_block


class OwnBlock(FSDPBlock):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)


class ThirdPartyBlock(nn.Module):
    """Stands for a block class from another library, which cannot subclass FSDPBlock."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)


class Unregistered(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)


def test_registered_and_subclassed_blocks_are_the_fsdp_units():
    register_fsdp_block(ThirdPartyBlock)
    model = nn.Sequential(OwnBlock(), ThirdPartyBlock(), Unregistered(), nn.Linear(4, 4))
    assert fsdp_block_types(model) == (OwnBlock, ThirdPartyBlock)


def test_a_models_own_declaration_wins():
    class Declares(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = OwnBlock()

        def fsdp_block_types(self) -> tuple[type, ...]:
            return (nn.Linear,)

    assert fsdp_block_types(Declares()) == (nn.Linear,)
