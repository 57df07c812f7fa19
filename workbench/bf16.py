"""bfloat16 conversions in numpy (round to nearest even), for building bf16
weight copies and for test oracles. bf16 values are stored as uint16."""

from __future__ import annotations

import numpy as np


def to_bf16(x) -> np.ndarray:
    """fp32 -> bf16 bits (uint16), round to nearest even, NaN kept quiet."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32)
    rounded = ((u + (np.uint32(0x7FFF) + ((u >> 16) & 1))) >> 16).astype(np.uint16)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    if nan.any():
        rounded[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded


def from_bf16(b) -> np.ndarray:
    """bf16 bits (uint16) -> fp32."""
    b = np.ascontiguousarray(b, dtype=np.uint16)
    return (b.astype(np.uint32) << 16).view(np.float32)


def round_bf16(x) -> np.ndarray:
    """fp32 values rounded to the nearest bf16, as fp32."""
    return from_bf16(to_bf16(x))
