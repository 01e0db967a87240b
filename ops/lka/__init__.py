"""Large-kernel attention (VAN): functional form, reference, Triton kernels, LKA module and VAN block."""
from .module import LargeKernelAttention, VANBlock, VANMlp
from .op import lka, lka_triton
from .reference import lka_reference

__all__ = ["lka", "lka_triton", "lka_reference", "LargeKernelAttention", "VANBlock", "VANMlp"]
