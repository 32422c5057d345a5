"""Shipping a model: int8 inference, ONNX export, and one entry to the fastest inference backend."""
from .backends import BACKENDS, InferenceBackend, onnx_backend, optimize_for_inference, pick_backend
from .onnx import check_onnx, export_onnx
from .ort import cache_dir_for
from .quantize import Int8Linear, Int8Mlp, compile_int8, quantize_int8

__all__ = ["BACKENDS", "InferenceBackend", "Int8Linear", "Int8Mlp", "cache_dir_for", "check_onnx",
           "compile_int8", "export_onnx", "onnx_backend", "optimize_for_inference", "pick_backend", "quantize_int8"]
