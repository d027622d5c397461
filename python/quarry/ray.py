"""Quarry across a cluster with Ray Data: a callable class for `Dataset.map_batches`.

    import ray, quarry.ray
    ds = ray.data.read_binary_files("photos/", include_paths=True)   # columns: bytes, path
    features = ds.map_batches(
        quarry.ray.Extractor,
        fn_constructor_kwargs={"model": "resnet50", "input_column": "bytes", "cpu_threads": 1},
        concurrency=4, batch_size=32)
    features.write_parquet("features/")

Each actor builds one Engine and keeps it. A row that cannot be read or run is kept, with a
null feature and its error in the error column; no row is dropped.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from . import Engine, QuarryError

__all__ = ["Extractor"]


class Extractor:
    """Extracts a feature column from an input column, one Engine per Ray actor.

    Use as `ds.map_batches(Extractor, fn_constructor_kwargs={...}, concurrency=N, batch_size=B)`;
    for an OpenCL GPU device also pass `num_gpus=1` to `map_batches` so that Ray places each
    actor with a GPU (`Extractor.ray_remote_args(device)` gives the arguments).

    Args:
        model, weights, device, cpu_threads, precision: as `quarry.Engine` (one CPU thread by
            default: Ray scales by actors, one core each).
        input_column: image paths (str), encoded image bytes (JPEG/PNG), or arrays (one model
            input row each, e.g. [3, 224, 224] floats or [128] token ids).
        output_column: the feature column written (a float32 list per row, null where failed).
        layer, pool: as `Engine.features` (default: the model's feature layer and pooling).
        error_column: the error message of a failed row, null for the others.
    """

    def __init__(self, model: str, weights: Optional[str] = None, device: str = "cpu", cpu_threads: Optional[int] = 1,
                 precision: str = "fp32", input_column: str = "image", output_column: str = "features",
                 layer: Optional[str] = None, pool: Optional[str] = None, error_column: str = "error") -> None:
        self.engine = Engine(model, weights=weights, device=device, cpu_threads=cpu_threads, precision=precision)
        self.input_column = input_column
        self.output_column = output_column
        self.error_column = error_column
        self.layer = layer
        self.pool = pool

    @staticmethod
    def ray_remote_args(device: str = "cpu", cpu_threads: Optional[int] = 1) -> Dict[str, Any]:
        """The resources one actor asks Ray for: a GPU for an OpenCL device other than the CPU's
        (PoCL's CPU device asks for none), else `cpu_threads` CPUs."""
        if device.startswith("opencl"):
            try:
                from . import devices
                chosen = [d for d in devices() if d.spec == device or (device == "opencl" and d.kind == "opencl")]
                if chosen and "cpu" not in chosen[0].name.lower() and "pthread" not in chosen[0].name.lower():
                    return {"num_gpus": 1}
            except QuarryError:
                return {"num_gpus": 1}
        return {"num_cpus": cpu_threads or os.cpu_count() or 1}

    def _row(self, value: Any, index: int) -> np.ndarray:
        """One model input row from a cell of the input column."""
        if isinstance(value, (str, os.PathLike)) or isinstance(value, np.str_):
            return self.engine.preprocess_image(str(value))
        if isinstance(value, (bytes, bytearray, memoryview, np.bytes_)):
            return self.engine.preprocess_image(bytes(value), name=f"row {index} ({self.input_column})")
        if value is None:
            raise QuarryError(f"row {index}: '{self.input_column}' is null")
        return np.ascontiguousarray(value, dtype=np.float32)

    def __call__(self, batch: Any) -> Any:
        """Adds the feature and error columns to a batch (a dict of NumPy arrays, a pandas
        DataFrame or a pyarrow Table, as Ray hands them) and returns it in the same form."""
        kind = "dict"
        if not isinstance(batch, Mapping):
            if hasattr(batch, "to_pydict") and hasattr(batch, "num_rows"):
                kind, batch = "arrow", {k: np.asarray(v.to_numpy(zero_copy_only=False)) for k, v in
                                        zip(batch.column_names, batch.columns)}
            elif hasattr(batch, "to_dict") and hasattr(batch, "columns"):
                kind, batch = "pandas", {k: batch[k].to_numpy() for k in batch.columns}
        else:
            batch = dict(batch)
        if self.input_column not in batch:
            raise QuarryError(f"the batch has no column '{self.input_column}'; its columns are {sorted(batch)}")
        cells = batch[self.input_column]
        count = len(cells)
        errors: List[Optional[str]] = [None] * count
        rows: List[np.ndarray] = []
        good: List[int] = []
        for i in range(count):
            try:
                row = self._row(cells[i], i)
            except QuarryError as error:
                errors[i] = str(error)
                continue
            except (TypeError, ValueError) as error:
                errors[i] = f"row {i}: cannot read '{self.input_column}' as an image or array: {error}"
                continue
            if rows and row.shape != rows[0].shape:
                errors[i] = f"row {i}: shape {list(row.shape)} differs from the batch's {list(rows[0].shape)}"
                continue
            rows.append(row)
            good.append(i)
        features = np.empty(count, dtype=object)
        features[:] = None
        if rows:
            try:
                pooled = self.engine.features(np.stack(rows), layer=self.layer, pool=self.pool)
                flat = pooled.reshape(len(rows), -1)
                for j, i in enumerate(good):
                    features[i] = np.array(flat[j], dtype=np.float32)
            except QuarryError as error:
                for i in good:
                    errors[i] = str(error)
        batch[self.output_column] = features
        batch[self.error_column] = np.array(errors, dtype=object)
        if kind == "pandas":
            import pandas as pd
            return pd.DataFrame({k: list(v) if v.dtype == object else v for k, v in batch.items()})
        return batch
