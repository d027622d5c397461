"""Quarry from Python: open a model, run it on NumPy arrays, extract features from image files.

A thin layer over Quarry's C ABI (include/quarry.h) with ctypes; calls release the GIL, so one
Engine may be run from several threads at once.

    import numpy as np, quarry
    engine = quarry.Engine("resnet50", cpu_threads=2)
    x = np.random.rand(8, 3, 224, 224).astype(np.float32)
    out = engine.run({"input": x}, outputs=["avgpool"])       # {"avgpool": array [8, 2048, 1, 1]}
    features, failed = quarry.extract(["photos/"], "resnet50", batch_size=32)
"""

from __future__ import annotations

import ctypes
import json
import os
import tempfile
from ctypes import POINTER, byref, c_char_p, c_float, c_int32, c_int64, c_uint8, c_void_p
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _lib
from ._lib import lib

__all__ = ["Engine", "QuarryError", "Device", "InputSpec", "devices", "extract", "version"]

Dim = Union[int, str]
PathLike = Union[str, "os.PathLike[str]"]


class QuarryError(Exception):
    """A failure reported by the library; the message names the file, model, input, tensor or
    device at fault."""


def _check(status: int) -> None:
    if status != _lib.QUARRY_OK:
        raise QuarryError(lib.quarry_last_error().decode("utf-8", "replace"))


def _bytes(text: Optional[Union[str, "os.PathLike[str]"]]) -> Optional[bytes]:
    return None if text is None else os.fsencode(text)


def version() -> str:
    """The library's version."""
    return lib.quarry_version().decode()


@dataclass(frozen=True)
class Device:
    """A device Quarry can run on; `spec` is how `Engine(device=...)` names it."""

    spec: str
    kind: str
    name: str
    vendor: str
    driver_version: str
    compute_units: int
    global_memory_bytes: int
    local_memory_bytes: int
    max_allocation_bytes: int
    fp16: bool
    fp64: bool


def devices() -> List[Device]:
    """The CPU and every OpenCL device, as `quarry devices` lists them."""
    result = []
    for i in range(lib.quarry_device_count()):
        info = _lib.DeviceInfo()
        _check(lib.quarry_device_get(i, byref(info)))
        result.append(Device(
            spec=info.spec.decode(), kind=info.kind.decode(), name=info.name.decode(),
            vendor=info.vendor.decode(), driver_version=info.driver_version.decode(),
            compute_units=info.compute_units, global_memory_bytes=info.global_memory_bytes,
            local_memory_bytes=info.local_memory_bytes, max_allocation_bytes=info.max_allocation_bytes,
            fp16=bool(info.fp16), fp64=bool(info.fp64)))
    return result


@dataclass(frozen=True)
class InputSpec:
    """A model input: its name, dtype and shape, symbolic dimensions as their names ("N", "S")."""

    name: str
    dtype: str
    shape: Tuple[Dim, ...]

    def __iter__(self):  # unpacks as (name, dtype, shape)
        return iter((self.name, self.dtype, self.shape))


class _Result:
    """Owns a library result; arrays over its memory keep it alive through their base."""

    def __init__(self, handle: c_void_p) -> None:
        self.handle = handle

    def __del__(self) -> None:
        if self.handle:
            lib.quarry_result_free(self.handle)
            self.handle = c_void_p()

    def arrays(self) -> Dict[str, np.ndarray]:
        out: Dict[str, np.ndarray] = {}
        for i in range(lib.quarry_result_count(self.handle)):
            name, data, rank, shape = c_char_p(), POINTER(c_float)(), c_int32(), POINTER(c_int64)()
            _check(lib.quarry_result_get(self.handle, i, byref(name), byref(data), byref(rank), byref(shape)))
            dims = tuple(shape[d] for d in range(rank.value))
            count = int(np.prod(dims, dtype=np.int64))
            # No copy: the array views the library's memory, which lives as long as `buffer`.
            buffer = (c_float * count).from_address(ctypes.addressof(data.contents))
            buffer._owner = self  # type: ignore[attr-defined]
            out[name.value.decode()] = np.frombuffer(buffer, dtype=np.float32).reshape(dims)
        return out


def _as_input(name: Optional[str], value: np.ndarray, keep: list) -> _lib.Tensor:
    """A C tensor over `value`: C-contiguous float32 arrays as they are, others converted once."""
    array = np.asarray(value)
    if array.dtype != np.float32 or not array.flags.c_contiguous:
        array = np.ascontiguousarray(array, dtype=np.float32)
    shape = (c_int64 * max(array.ndim, 1))(*array.shape)
    keep.append((array, shape))
    return _lib.Tensor(_bytes(name), array.ctypes.data_as(POINTER(c_float)), array.ndim, shape)


class Engine:
    """A model opened on a device, ready to run many times.

    Args:
        model: a zoo name ("resnet50", "bert_base"…) or an .onnx file.
        weights: a .safetensors checkpoint for a zoo model (its reference's state_dict keys);
            without it a zoo model runs on seeded, untrained weights (`untrained` is True).
        device: "cpu", "opencl", "opencl:N", a comma list, or "all" (the first device runs).
        cpu_threads: threads of the CPU backend (None: every core).
        precision: as the tool's --precision: "fp32", or "tf32", "bf16", "fp16" where the device has
            kernels for them (a QuarryError says why not).

    Raises:
        QuarryError: a missing or bad model file, weights that do not fit, an unknown device.
    """

    def __init__(self, model: PathLike, weights: Optional[PathLike] = None, device: str = "cpu",
                 cpu_threads: Optional[int] = None, precision: str = "fp32") -> None:
        self._handle = c_void_p()
        if cpu_threads is not None and cpu_threads < 1:
            raise QuarryError(f"cpu_threads must be at least 1 (or None for every core), got {cpu_threads}")
        _check(lib.quarry_engine_open(_bytes(model), _bytes(weights), device.encode(), cpu_threads or 0,
                                      precision.encode(), byref(self._handle)))
        self.name: str = lib.quarry_engine_name(self._handle).decode()
        self.untrained: bool = bool(lib.quarry_engine_untrained(self._handle))
        self.inputs: List[InputSpec] = [self._input(i) for i in range(lib.quarry_engine_input_count(self._handle))]
        self.outputs: List[str] = [lib.quarry_engine_output(self._handle, i).decode()
                                   for i in range(lib.quarry_engine_output_count(self._handle))]
        self.taps: List[str] = [lib.quarry_engine_tap(self._handle, i).decode()
                                for i in range(lib.quarry_engine_tap_count(self._handle))]

    def _input(self, index: int) -> InputSpec:
        info = _lib.InputInfo()
        _check(lib.quarry_engine_input(self._handle, index, byref(info)))
        shape: List[Dim] = []
        for d in range(info.rank):
            shape.append(info.symbols[d].decode() if info.dims[d] < 0 else int(info.dims[d]))
        return InputSpec(info.name.decode(), info.dtype.decode(), tuple(shape))

    def close(self) -> None:
        """Frees the engine (also done when it is garbage-collected)."""
        if self._handle:
            lib.quarry_engine_free(self._handle)
            self._handle = c_void_p()

    def __del__(self) -> None:
        if getattr(self, "_handle", None):
            self.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _live(self) -> c_void_p:
        if not self._handle:
            raise QuarryError("the engine is closed")
        return self._handle

    def run(self, inputs: Mapping[str, np.ndarray], outputs: Optional[Sequence[str]] = None,
            out: Optional[Mapping[str, np.ndarray]] = None) -> Dict[str, np.ndarray]:
        """Runs once and returns the named tensors (default: the model's outputs).

        Args:
            inputs: every model input by name; C-contiguous float32 arrays are read in place,
                others are converted to that once (integer ids and masks as float32, as Quarry
                computes them).
            outputs: any tensor names of the graph (see `taps`); the graph past them is not run.
            out: caller-owned C-contiguous float32 arrays to write the outputs into, by name (then
                `outputs` defaults to their names); each must hold its output's element count.

        Returns:
            A dict from name to a float32 array: the arrays of `out`, reshaped views of them, or
            arrays that view the library's memory (no copy).

        Raises:
            QuarryError: an unknown or missing input, a wrong shape, an unknown tensor name.
        """
        handle = self._live()
        keep: list = []
        tensors = (_lib.Tensor * max(len(inputs), 1))()
        for i, (name, value) in enumerate(inputs.items()):
            tensors[i] = _as_input(name, value, keep)
        if outputs is not None:
            outputs = [outputs] if isinstance(outputs, str) else list(outputs)
        if out is not None:
            return self._run_into(handle, tensors, len(inputs), outputs if outputs is not None else list(out), out)
        names = None
        if outputs is not None:
            if not outputs:
                raise QuarryError("outputs names no tensor")
            names = (c_char_p * len(outputs))(*[o.encode() for o in outputs])
        result = c_void_p()
        _check(lib.quarry_engine_run(handle, tensors, len(inputs), names, 0 if names is None else len(outputs),
                                     byref(result)))
        return _Result(result).arrays()

    def _run_into(self, handle: c_void_p, tensors, count: int, names: List[str],
                  out: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if not names:
            raise QuarryError("outputs names no tensor")
        slots = (_lib.Output * len(names))()
        for i, name in enumerate(names):
            if name not in out:
                raise QuarryError(f"out has no array for output '{name}'")
            array = out[name]
            if not isinstance(array, np.ndarray) or array.dtype != np.float32 or not array.flags.c_contiguous \
                    or not array.flags.writeable:
                raise QuarryError(f"out['{name}'] must be a writable C-contiguous float32 NumPy array")
            slots[i].name = name.encode()
            slots[i].data = array.ctypes.data_as(POINTER(c_float))
            slots[i].capacity = array.size
        _check(lib.quarry_engine_run_into(handle, tensors, count, slots, len(names)))
        result: Dict[str, np.ndarray] = {}
        for i, name in enumerate(names):
            shape = tuple(slots[i].shape[d] for d in range(slots[i].rank))
            array = out[name]
            result[name] = array if array.shape == shape else array.reshape(-1)[:int(np.prod(shape, dtype=np.int64))].reshape(shape)
        return result

    def features(self, batch: np.ndarray, layer: Optional[str] = None, pool: Optional[str] = None) -> np.ndarray:
        """Feature rows of a batch as `quarry extract` makes them: `batch` is the model's data
        input (mask inputs are made from it), `layer` a tap (default: the model's feature layer),
        `pool` one of none, global_average, cls, mean, last (default: the model's for its
        feature layer, else none). Returns [N, features]."""
        keep: list = []
        tensor = _as_input(None, batch, keep)
        result = c_void_p()
        _check(lib.quarry_engine_features(self._live(), byref(tensor), _bytes(layer), _bytes(pool), byref(result)))
        return next(iter(_Result(result).arrays().values()))

    def preprocess_image(self, image: Union[PathLike, bytes, bytearray, memoryview], name: Optional[str] = None) -> np.ndarray:
        """An image file (a path) or encoded JPEG/PNG bytes, decoded and preprocessed for this
        model as `quarry extract` does it; returns [C, H, W] float32."""
        result = c_void_p()
        if isinstance(image, (bytes, bytearray, memoryview)):
            data = bytes(image)
            buffer = (c_uint8 * max(len(data), 1)).from_buffer_copy(data or b"\0")
            _check(lib.quarry_engine_preprocess_image(self._live(), None, buffer, len(data),
                                                      _bytes(name or "image bytes"), byref(result)))
        else:
            _check(lib.quarry_engine_preprocess_image(self._live(), _bytes(image), None, 0, None, byref(result)))
        return next(iter(_Result(result).arrays().values()))

    def __repr__(self) -> str:
        return f"quarry.Engine({self.name!r}, inputs={[tuple(i) for i in self.inputs]})"


def extract(paths: Union[PathLike, Sequence[PathLike]], model: PathLike, layer: Optional[str] = None,
            pool: Optional[str] = None, batch_size: int = 16, weights: Optional[PathLike] = None,
            device: str = "cpu", cpu_threads: Optional[int] = None) -> Tuple[np.ndarray, List[str]]:
    """Extracts features of image files (and folders of them, .npy arrays, text files listing
    paths) exactly as `quarry extract` does: same decoding, preprocessing, batching and pooling.

    Returns:
        (features, failed): one row per readable input in path order (folders sorted by file
        name), and the inputs that could not be read.

    Raises:
        QuarryError: a bad model, layer, pool or device, or no inputs at all.
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if batch_size < 1:
        raise QuarryError(f"batch_size must be at least 1, got {batch_size}")
    with tempfile.TemporaryDirectory(prefix="quarry-extract-") as folder:
        output = os.path.join(folder, "features.npy")
        array = (c_char_p * max(len(items), 1))(*[_bytes(p) for p in items])
        status = lib.quarry_extract(array, len(items), _bytes(model), _bytes(weights), _bytes(layer), _bytes(pool),
                                    batch_size, device.encode(), cpu_threads or 0, output.encode())
        if status not in (_lib.QUARRY_OK, _lib.QUARRY_PARTIAL):
            _check(status)
        features = np.load(output)
        manifest = json.loads(Path(folder, "features.manifest.json").read_text())
    return features, [f["source"] for f in manifest["failed"]]
