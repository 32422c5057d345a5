"""Shipping a model: int8 inference and ONNX export."""
from .onnx import check_onnx, export_onnx
from .quantize import Int8Linear, Int8Mlp, compile_int8, quantize_int8

__all__ = ["Int8Linear", "Int8Mlp", "quantize_int8", "compile_int8", "export_onnx", "check_onnx"]
