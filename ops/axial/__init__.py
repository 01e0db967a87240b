"""Axial attention (Axial-DeepLab, MedT): functional forms, reference, fused Triton kernel and module."""
from .module import AxialAttention
from .op import axial_attention, axial_rel_attention, axial_rel_attention_triton
from .reference import axial_attention_reference, axial_rel_attention_reference

__all__ = ["axial_attention", "axial_rel_attention", "axial_rel_attention_triton", "axial_attention_reference",
           "axial_rel_attention_reference", "AxialAttention"]
