"""Fused operators (entity attention, QMIX mixing) with their pure-torch twins and the switch
that picks between them."""

from .dispatch import (KERNEL_MODES, attention_fallback_reason, check_kernels, entity_attention, fallbacks,
                       mix_fallback_reason, qmix_mix, use_fused)
from .reference import entity_attention_reference, masked_attention_probs, qmix_mix_reference

__all__ = [
    "KERNEL_MODES", "attention_fallback_reason", "check_kernels", "entity_attention", "entity_attention_reference",
    "fallbacks", "masked_attention_probs", "mix_fallback_reason", "qmix_mix", "qmix_mix_reference", "use_fused",
]
