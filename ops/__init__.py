"""Attention ops: functional forms and modules, each with a pure-PyTorch reference and fused Triton kernels."""
