"""Shipping a model: int8 and int4 inference, structured pruning, ONNX export, and one entry to the fastest
inference backend."""
from .backends import BACKENDS, InferenceBackend, onnx_backend, optimize_for_inference, pick_backend
from .int4 import Int4Linear, quantize_int4
from .onnx import check_onnx, export_onnx
from .ort import cache_dir_for
from .quantize import Int8Linear, Int8Mlp, compile_int8, quantize_int8

__all__ = ["BACKENDS", "InferenceBackend", "Int4Linear", "Int8Linear", "Int8Mlp", "cache_dir_for", "check_onnx",
           "compile_int8", "export_onnx", "onnx_backend", "optimize_for_inference", "pick_backend", "quantize_int4",
           "quantize_int8"]
