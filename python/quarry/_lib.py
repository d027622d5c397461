"""ctypes declarations of include/quarry.h, and the loading of libquarry.so.

The library is the one installed beside this file, or QUARRY_LIBRARY when set (a build tree's
.build/release/libquarry.so, for working on the Swift side without reinstalling).
"""

from __future__ import annotations

import ctypes
import os
from ctypes import POINTER, c_char_p, c_float, c_int32, c_int64, c_size_t, c_uint8, c_void_p
from pathlib import Path

QUARRY_OK = 0
QUARRY_ERROR = 1
QUARRY_PARTIAL = 3
QUARRY_MAX_RANK = 8


class DeviceInfo(ctypes.Structure):
    _fields_ = [
        ("spec", c_char_p), ("kind", c_char_p), ("name", c_char_p), ("vendor", c_char_p),
        ("driver_version", c_char_p), ("compute_units", c_int64), ("global_memory_bytes", c_int64),
        ("local_memory_bytes", c_int64), ("max_allocation_bytes", c_int64), ("fp16", c_int32),
        ("fp64", c_int32),
    ]


class InputInfo(ctypes.Structure):
    _fields_ = [
        ("name", c_char_p), ("dtype", c_char_p), ("rank", c_int32), ("dims", POINTER(c_int64)),
        ("symbols", POINTER(c_char_p)),
    ]


class Tensor(ctypes.Structure):
    _fields_ = [("name", c_char_p), ("data", POINTER(c_float)), ("rank", c_int32), ("shape", POINTER(c_int64))]


class Output(ctypes.Structure):
    _fields_ = [
        ("name", c_char_p), ("data", POINTER(c_float)), ("capacity", c_int64), ("rank", c_int32),
        ("shape", c_int64 * QUARRY_MAX_RANK),
    ]


def _path() -> str:
    override = os.environ.get("QUARRY_LIBRARY")
    if override:
        return override
    return str(Path(__file__).resolve().parent / "libquarry.so")


def _load() -> ctypes.CDLL:
    path = _path()
    try:
        lib = ctypes.CDLL(path)
    except OSError as error:
        raise ImportError(f"quarry: cannot load {path}: {error} (reinstall with "
                          "`python3 -m pip install ./python`, or set QUARRY_LIBRARY)") from error
    status = c_int32
    handle = c_void_p
    signatures = {
        "quarry_last_error": (c_char_p, []),
        "quarry_version": (c_char_p, []),
        "quarry_device_count": (c_int32, []),
        "quarry_device_get": (status, [c_int32, POINTER(DeviceInfo)]),
        "quarry_engine_open": (status, [c_char_p, c_char_p, c_char_p, c_int32, c_char_p, POINTER(handle)]),
        "quarry_engine_free": (None, [handle]),
        "quarry_engine_name": (c_char_p, [handle]),
        "quarry_engine_untrained": (c_int32, [handle]),
        "quarry_engine_input_count": (c_int32, [handle]),
        "quarry_engine_input": (status, [handle, c_int32, POINTER(InputInfo)]),
        "quarry_engine_output_count": (c_int32, [handle]),
        "quarry_engine_output": (c_char_p, [handle, c_int32]),
        "quarry_engine_tap_count": (c_int32, [handle]),
        "quarry_engine_tap": (c_char_p, [handle, c_int32]),
        "quarry_engine_run": (status, [handle, POINTER(Tensor), c_int32, POINTER(c_char_p), c_int32, POINTER(handle)]),
        "quarry_engine_run_into": (status, [handle, POINTER(Tensor), c_int32, POINTER(Output), c_int32]),
        "quarry_engine_features": (status, [handle, POINTER(Tensor), c_char_p, c_char_p, POINTER(handle)]),
        "quarry_engine_preprocess_image": (status, [handle, c_char_p, POINTER(c_uint8), c_size_t, c_char_p, POINTER(handle)]),
        "quarry_result_count": (c_int32, [handle]),
        "quarry_result_get": (status, [handle, c_int32, POINTER(c_char_p), POINTER(POINTER(c_float)),
                                       POINTER(c_int32), POINTER(POINTER(c_int64))]),
        "quarry_result_free": (None, [handle]),
        "quarry_extract": (status, [POINTER(c_char_p), c_int32, c_char_p, c_char_p, c_char_p, c_char_p,
                                    c_int32, c_char_p, c_int32, c_char_p]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    return lib


lib = _load()
