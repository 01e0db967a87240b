"""Attention gate (Attention U-Net): functional form, reference, fused Triton kernels and module."""
from .module import AttentionGate
from .op import attention_gate, attention_gate_triton
from .reference import attention_gate_reference

__all__ = ["attention_gate", "attention_gate_triton", "attention_gate_reference", "AttentionGate"]
