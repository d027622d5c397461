"""The Python API against the command-line tool on the same models and inputs (identical floats),
its errors, caller-owned outputs, threads, and the C header compiled by a C compiler."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

import quarry


def run_cli(cli: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([cli, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def cli_file_name(tensor: str) -> str:
    # NumPy.fileName(forTensor:): every character outside [A-Za-z0-9._-] becomes '_'.
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in tensor) + ".npy"


@pytest.mark.parametrize("model, batch, taps", [
    ("plain_cnn", 5, ["features.1", "classifier"]),
    ("resnet18", 3, ["layer2", "avgpool"]),
])
def test_zoo_run_equals_cli_run(cli, tmp_path, model, batch, taps):
    engine = quarry.Engine(model, cpu_threads=2)
    assert engine.untrained
    name, dtype, shape = engine.inputs[0]
    assert dtype == "float32" and isinstance(shape[0], str), "the batch dimension is symbolic"
    for t in taps:
        assert t in engine.taps
    x = np.random.default_rng().standard_normal((batch, *shape[1:]), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    done = run_cli(cli, "run", model, "--input", f"{name}={tmp_path / 'x.npy'}", "--output-dir", str(tmp_path / "out"),
                   "--outputs", ",".join(taps), "--cpu-threads", "2")
    assert done.returncode == 0, done.stderr
    got = engine.run({name: x}, outputs=taps)
    assert list(got) == taps
    for t in taps:
        want = np.load(tmp_path / "out" / cli_file_name(t))
        assert got[t].dtype == np.float32 and got[t].shape == want.shape
        assert np.array_equal(got[t], want), f"{model} {t}: max difference {np.abs(got[t] - want).max()}"
    # The input array was read in place, not written.
    assert np.array_equal(x, np.load(tmp_path / "x.npy"))


def test_onnx_run_equals_cli_run_and_reference(cli, repo, tmp_path):
    folder = repo / "Tests" / "Fixtures" / "onnx" / "conv"
    engine = quarry.Engine(folder / "model.onnx")
    assert not engine.untrained
    inputs = dict(np.load(folder / "inputs.npz"))
    reference = dict(np.load(folder / "outputs.npz"))  # onnxruntime's outputs, stored with the fixture
    args = []
    for name, value in inputs.items():
        np.save(tmp_path / f"{name}.npy", value)
        args += ["--input", f"{name}={tmp_path / (name + '.npy')}"]
    done = run_cli(cli, "run", str(folder / "model.onnx"), *args, "--output-dir", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    got = engine.run(inputs)
    assert sorted(got) == sorted(engine.outputs) == sorted(reference)
    for name, value in got.items():
        assert np.array_equal(value, np.load(tmp_path / "out" / cli_file_name(name)))
        np.testing.assert_allclose(value, reference[name], rtol=1e-4, atol=1e-5)


def test_caller_owned_outputs_are_written(cli):
    engine = quarry.Engine("plain_cnn", cpu_threads=2)
    x = np.random.default_rng().standard_normal((4, 3, 32, 32), dtype=np.float32)
    want = engine.run({"input": x}, outputs=["features.1", "classifier"])
    out = {name: np.full(value.shape, np.nan, dtype=np.float32) for name, value in want.items()}
    got = engine.run({"input": x}, outputs=list(out), out=out)
    for name in out:
        assert got[name] is out[name]
        assert np.array_equal(out[name], want[name])
    small = {"classifier": np.full(3, np.nan, dtype=np.float32)}
    with pytest.raises(quarry.QuarryError, match=r"'classifier'.*needs 40 floats; its buffer holds 3"):
        engine.run({"input": x}, outputs=["classifier"], out=small)
    assert np.isnan(small["classifier"]).all(), "a failed run writes no caller buffer"


def test_non_contiguous_and_integer_inputs_are_converted():
    engine = quarry.Engine("plain_cnn", cpu_threads=1)
    x = np.random.default_rng().standard_normal((2, 3, 32, 64), dtype=np.float32)[:, :, :, ::2]
    assert not x.flags.c_contiguous
    got = engine.run({"input": x}, outputs=["classifier"])["classifier"]
    want = engine.run({"input": np.ascontiguousarray(x)}, outputs=["classifier"])["classifier"]
    assert np.array_equal(got, want)
    as_f64 = engine.run({"input": x.astype(np.float64)}, outputs=["classifier"])["classifier"]
    assert np.array_equal(as_f64, want)


def test_one_engine_runs_from_several_threads():
    engine = quarry.Engine("plain_cnn", cpu_threads=1)
    rng = np.random.default_rng()
    inputs = [rng.standard_normal((b, 3, 32, 32), dtype=np.float32) for b in (1, 2, 3, 2, 1, 3, 2, 1)]
    want = [engine.run({"input": x}, outputs=["classifier"])["classifier"] for x in inputs]
    got = [None] * len(inputs)
    failures = []

    def work(i):
        try:
            for _ in range(5):
                got[i] = engine.run({"input": inputs[i]}, outputs=["classifier"])["classifier"]
        except Exception as error:  # collected: an assertion inside a thread would be lost
            failures.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    for g, w in zip(got, want):
        assert np.array_equal(g, w)


def test_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(quarry.QuarryError, match="no_such_model.onnx"):
        quarry.Engine(str(tmp_path / "no_such_model.onnx"))
    with pytest.raises(quarry.QuarryError, match="unknown model 'resnet_nine'"):
        quarry.Engine("resnet_nine")
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(quarry.QuarryError, match="garbage.onnx"):
        quarry.Engine(bad)
    with pytest.raises(quarry.QuarryError, match="unknown device 'tpu'"):
        quarry.Engine("plain_cnn", device="tpu")
    with pytest.raises(quarry.QuarryError, match="precision fp16 is not available"):
        quarry.Engine("plain_cnn", precision="fp16")
    with pytest.raises(quarry.QuarryError, match="unknown precision 'fp8'"):
        quarry.Engine("plain_cnn", precision="fp8")
    engine = quarry.Engine("plain_cnn", cpu_threads=1)
    with pytest.raises(quarry.QuarryError, match=r"input 'input' has shape \[2, 3, 31, 32\]; dimension 2 must be 32"):
        engine.run({"input": np.zeros((2, 3, 31, 32), dtype=np.float32)})
    with pytest.raises(quarry.QuarryError, match=r"input 'input' has shape \[3, 32, 32\]"):
        engine.run({"input": np.zeros((3, 32, 32), dtype=np.float32)})
    with pytest.raises(quarry.QuarryError, match="no input 'pixels'"):
        engine.run({"pixels": np.zeros((1, 3, 32, 32), dtype=np.float32)})
    with pytest.raises(quarry.QuarryError, match="missing input input"):
        engine.run({})
    with pytest.raises(quarry.QuarryError, match="no tensor named layer9"):
        engine.run({"input": np.zeros((1, 3, 32, 32), dtype=np.float32)}, outputs=["layer9"])
    with pytest.raises(quarry.QuarryError, match="unknown pooling 'median'"):
        engine.features(np.zeros((1, 3, 32, 32), dtype=np.float32), pool="median")
    engine.close()
    with pytest.raises(quarry.QuarryError, match="closed"):
        engine.run({"input": np.zeros((1, 3, 32, 32), dtype=np.float32)})


def test_devices_list_the_cpu():
    found = quarry.devices()
    assert found[0].spec == "cpu" and found[0].kind == "cpu" and found[0].compute_units >= 1
    assert all(d.spec.startswith("opencl:") and d.kind == "opencl" for d in found[1:])


def write_images(repo: Path, folder: Path) -> list:
    """The sample images (JPEG and PNG, grey, palette, RGBA, 16-bit) and one corrupt file."""
    folder.mkdir()
    for image in sorted((repo / "samples" / "images").iterdir()):
        shutil.copy(image, folder / image.name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return sorted(folder.iterdir())


def test_extract_equals_cli_extract(cli, repo, tmp_path):
    files = write_images(repo, tmp_path / "images")
    features, failed = quarry.extract([str(tmp_path / "images")], "resnet18", batch_size=4, cpu_threads=2)
    assert failed == [str(tmp_path / "images" / "broken.jpg")]
    done = run_cli(cli, "extract", "resnet18", "--input", str(tmp_path / "images"), "--output", str(tmp_path / "cli.npy"),
                   "--batch", "4", "--cpu-threads", "2", "--quiet")
    assert done.returncode == 3, done.stderr  # some inputs could not be read
    want = np.load(tmp_path / "cli.npy")
    assert features.shape == want.shape == (len(files) - 1, 512)
    assert np.array_equal(features, want)
    # The same rows through preprocess_image and features (what the Ray extractor calls).
    engine = quarry.Engine("resnet18", cpu_threads=2)
    good = [f for f in files if f.name != "broken.jpg"]
    rows = [engine.preprocess_image(str(f)) for f in good]
    rows[1] = engine.preprocess_image(good[1].read_bytes(), name=good[1].name)
    for b in range(0, len(rows), 4):
        assert np.array_equal(engine.features(np.stack(rows[b:b + 4])), want[b:b + 4])
    with pytest.raises(quarry.QuarryError, match="broken.jpg"):
        engine.preprocess_image(str(tmp_path / "images" / "broken.jpg"))
    with pytest.raises(quarry.QuarryError, match="upload.png"):
        engine.preprocess_image(b"\x89PNG\r\n\x1a\n nope", name="upload.png")


C_PROGRAM = r"""
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "quarry.h"

int main(void) {
    quarry_engine *engine = NULL;
    if (quarry_engine_open("plain_cnn", NULL, "cpu", 1, "fp32", &engine) != QUARRY_OK) {
        fprintf(stderr, "open: %s\n", quarry_last_error()); return 1;
    }
    quarry_input_info info;
    if (quarry_engine_input(engine, 0, &info) != QUARRY_OK || info.rank != 4 || info.dims[0] != -1 || info.dims[1] != 3) return 2;
    static float x[2 * 3 * 32 * 32];
    for (int i = 0; i < 2 * 3 * 32 * 32; i++) x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    int64_t shape[4] = {2, 3, 32, 32};
    quarry_tensor input = {info.name, x, 4, shape};
    const char *names[1] = {"classifier"};
    quarry_result *result = NULL;
    if (quarry_engine_run(engine, &input, 1, names, 1, &result) != QUARRY_OK) { fprintf(stderr, "%s\n", quarry_last_error()); return 3; }
    const char *name; const float *data; int32_t rank; const int64_t *dims;
    if (quarry_result_get(result, 0, &name, &data, &rank, &dims) != QUARRY_OK || rank != 2 || dims[0] != 2 || dims[1] != 10) return 4;
    float out[20];
    for (int i = 0; i < 20; i++) out[i] = NAN;
    quarry_output into = {"classifier", out, 20, 0, {0}};
    if (quarry_engine_run_into(engine, &input, 1, &into, 1) != QUARRY_OK || into.rank != 2) return 5;
    if (memcmp(out, data, sizeof out) != 0) return 6;
    quarry_result_free(result);
    if (quarry_engine_open("plain_cnn", NULL, "gpu:9", 1, NULL, &engine) != QUARRY_ERROR || engine != NULL) return 7;
    printf("%s\n", quarry_last_error());
    return 0;
}
"""


def test_c_header_compiles_and_runs(repo, tmp_path):
    compiler = shutil.which("cc") or shutil.which("clang") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler")
    library = Path(quarry._lib.lib._name)
    (tmp_path / "main.c").write_text(C_PROGRAM)
    subprocess.run([compiler, "-std=c11", "-Wall", "-Werror", "-I", str(repo / "include"), str(tmp_path / "main.c"),
                    str(library), f"-Wl,-rpath,{library.parent}", "-lm", "-o", str(tmp_path / "main")], check=True)
    done = subprocess.run([str(tmp_path / "main")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 0, done.stderr
    assert "unknown device 'gpu:9'" in done.stdout


def test_extractor_reads_paths_bytes_and_arrays_and_marks_failed_rows(repo, tmp_path):
    """quarry.ray.Extractor called as Ray calls it (a dict of NumPy columns), without Ray."""
    import quarry.ray

    files = [f for f in write_images(repo, tmp_path / "images") if f.name != "broken.jpg"]
    engine = quarry.Engine("resnet18", cpu_threads=1)
    rows = [engine.preprocess_image(str(f)) for f in files[:3]]
    want = engine.features(np.stack(rows))
    extractor = quarry.ray.Extractor("resnet18", cpu_threads=1)
    cells = np.empty(6, dtype=object)
    cells[:] = [str(files[0]), files[1].read_bytes(), rows[2], None, str(tmp_path / "missing.jpg"),
                np.zeros((3, 8, 8), dtype=np.float32)]
    out = extractor({"image": cells, "id": np.arange(6)})
    assert list(out["id"]) == list(range(6)), "input columns are kept, rows in order"
    for i in range(3):
        assert out["error"][i] is None
        np.testing.assert_array_equal(out["features"][i], want[i])
    assert all(out["features"][i] is None for i in range(3, 6))
    assert "null" in out["error"][3]
    assert "missing.jpg" in out["error"][4]
    assert "shape [3, 8, 8] differs" in out["error"][5]
    # A batch whose rows all run but fail as a batch: every row marked, none dropped.
    small = quarry.ray.Extractor("resnet18", cpu_threads=1, input_column="x", output_column="f", layer="no_such_layer")
    out = small({"x": np.zeros((2, 3, 224, 224), dtype=np.float32)})
    assert list(out["f"]) == [None, None] and all("no_such_layer" in e for e in out["error"])
    with pytest.raises(quarry.QuarryError, match="no column 'image'"):
        extractor({"pixels": cells})
