/*
 * quarry.h: the C ABI of Quarry (libquarry.so), thin over the Swift QuarryRuntime module.
 *
 * Conventions
 * - Every function that can fail returns a quarry_status; on failure the message naming the file,
 *   model, input, tensor or device at fault is quarry_last_error(), kept per thread until that
 *   thread's next failing call. Nothing here exits or aborts on bad input.
 * - Tensors are dense, row-major (C-contiguous) float32. Integer inputs (token ids) and masks are
 *   passed as float32 too, as Quarry computes them.
 * - A quarry_engine may be run from several threads at once; runs of one compiled shape are
 *   serialised inside, runs of different shapes or engines proceed in parallel.
 * - Strings and arrays returned through an engine or a result stay valid until that engine or
 *   result is freed; those of quarry_device_info for the life of the process.
 */
#ifndef QUARRY_H
#define QUARRY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The statuses are the command-line tool's exit statuses. */
typedef enum {
    QUARRY_OK = 0,
    /* Bad usage or bad input: a file, a model, a shape, a device, a buffer too small. */
    QUARRY_ERROR = 1,
    /* quarry_extract finished but some inputs could not be read (listed in its manifest). */
    QUARRY_PARTIAL = 3,
} quarry_status;

/* Most dimensions a tensor may have in a caller-owned output (quarry_output.shape). */
#define QUARRY_MAX_RANK 8

typedef struct quarry_engine quarry_engine;
typedef struct quarry_result quarry_result;

/* The message of this thread's latest failure ("" if none). */
const char *quarry_last_error(void);

/* The library's version, e.g. "0.1.0". */
const char *quarry_version(void);

/* ---- Devices ---------------------------------------------------------------------------- */

typedef struct {
    const char *spec;          /* what a device spec names it by: "cpu", "opencl:0" */
    const char *kind;          /* "cpu" or "opencl" */
    const char *name;
    const char *vendor;
    const char *driver_version;
    int64_t compute_units;
    int64_t global_memory_bytes;
    int64_t local_memory_bytes;
    int64_t max_allocation_bytes;
    int32_t fp16;              /* 1 if the device computes in half precision */
    int32_t fp64;
} quarry_device_info;

/* The CPU and every OpenCL device, as `quarry devices` lists them (found once per process). */
int32_t quarry_device_count(void);
quarry_status quarry_device_get(int32_t index, quarry_device_info *out);

/* ---- Engines ---------------------------------------------------------------------------- */

/*
 * Opens `model` (a zoo name or an .onnx file; `weights`, a .safetensors checkpoint for a zoo model,
 * or NULL) on `device` ("cpu", "opencl", "opencl:N", a comma list, "all"; NULL: "cpu") with
 * `cpu_threads` CPU threads (0: every core) computing in `precision` ("fp32", "tf32", "bf16",
 * "fp16"; NULL: "fp32"; a precision the device has no kernels for is an error saying so).
 * A zoo model without weights runs on seeded, untrained parameters (see quarry_engine_untrained).
 */
quarry_status quarry_engine_open(const char *model, const char *weights, const char *device,
                                 int32_t cpu_threads, const char *precision, quarry_engine **out);
void quarry_engine_free(quarry_engine *engine);

/* The model's name (zoo name or ONNX file name) and whether its parameters are untrained. */
const char *quarry_engine_name(const quarry_engine *engine);
int32_t quarry_engine_untrained(const quarry_engine *engine);

/* One declared input; dims[i] is -1 where the dimension is symbolic and symbols[i] names it. */
typedef struct {
    const char *name;
    const char *dtype;         /* "float32" */
    int32_t rank;
    const int64_t *dims;
    const char *const *symbols; /* NULL entries for fixed dimensions */
} quarry_input_info;

int32_t quarry_engine_input_count(const quarry_engine *engine);
quarry_status quarry_engine_input(const quarry_engine *engine, int32_t index, quarry_input_info *out);

/* The model's default outputs, and every tensor a run can return (its taps), in graph order. */
int32_t quarry_engine_output_count(const quarry_engine *engine);
const char *quarry_engine_output(const quarry_engine *engine, int32_t index);
int32_t quarry_engine_tap_count(const quarry_engine *engine);
const char *quarry_engine_tap(const quarry_engine *engine, int32_t index);

/* A named input: `data` holds the product of `shape` floats, read in place during the call. */
typedef struct {
    const char *name;
    const float *data;
    int32_t rank;
    const int64_t *shape;
} quarry_tensor;

/*
 * Runs once on `inputs` (every declared input) and returns the tensors named in `outputs`
 * (`output_count` names; 0: the model's outputs) in a library-owned result.
 */
quarry_status quarry_engine_run(quarry_engine *engine, const quarry_tensor *inputs, int32_t input_count,
                                 const char *const *outputs, int32_t output_count, quarry_result **out);

/* A caller-owned output: `data` holds `capacity` floats; the run fills rank and shape. */
typedef struct {
    const char *name;
    float *data;
    int64_t capacity;
    int32_t rank;
    int64_t shape[QUARRY_MAX_RANK];
} quarry_output;

/* Runs once and writes each named output into the caller's buffer; a buffer too small is an
 * error naming the output and the floats it needs, and leaves every buffer unwritten. */
quarry_status quarry_engine_run_into(quarry_engine *engine, const quarry_tensor *inputs, int32_t input_count,
                                     quarry_output *outputs, int32_t output_count);

/*
 * Feature rows for a batch, as `quarry extract` makes them: runs `input` (the batch of the model's
 * data input; mask inputs are made from it as extract does) for `layer` (NULL: the model's feature
 * layer) and pools it by `pool` ("none", "global_average", "cls", "mean", "last"; NULL: the model's
 * pooling for its feature layer, else "none"). The result holds one tensor, [N, features].
 */
quarry_status quarry_engine_features(quarry_engine *engine, const quarry_tensor *input, const char *layer,
                                     const char *pool, quarry_result **out);

/*
 * One image preprocessed for the engine's model as `quarry extract` does it (decode, resize,
 * centre crop, scale, normalise): from the file `path`, or, when `path` is NULL, from `size`
 * encoded bytes (JPEG or PNG) that `name` stands for in errors. The result holds [C, H, W].
 */
quarry_status quarry_engine_preprocess_image(quarry_engine *engine, const char *path, const uint8_t *bytes,
                                             size_t size, const char *name, quarry_result **out);

/* ---- Results ---------------------------------------------------------------------------- */

int32_t quarry_result_count(const quarry_result *result);
/* Output `index`: its name, data (row-major float32), rank and shape, owned by the result. */
quarry_status quarry_result_get(const quarry_result *result, int32_t index, const char **name,
                                const float **data, int32_t *rank, const int64_t **shape);
void quarry_result_free(quarry_result *result);

/* ---- Extraction ------------------------------------------------------------------------- */

/*
 * `quarry extract` as a call: the `path_count` images, folders, .npy arrays or path lists in
 * `paths` through `model` (with `weights` or NULL) into `output` (.npy, or .safetensors for
 * several layers) and its manifest (`output` with .manifest.json). `layers` (comma-separated; NULL:
 * the feature layer), `pool` (NULL: the model's), `batch_size` (0: 16), `device` and `cpu_threads`
 * as for quarry_engine_open. No progress is printed. Returns QUARRY_PARTIAL when some inputs could
 * not be read: they are in the manifest's "failed" list, and the other rows are written.
 */
quarry_status quarry_extract(const char *const *paths, int32_t path_count, const char *model, const char *weights,
                             const char *layers, const char *pool, int32_t batch_size, const char *device,
                             int32_t cpu_threads, const char *output);

#ifdef __cplusplus
}
#endif

#endif /* QUARRY_H */
