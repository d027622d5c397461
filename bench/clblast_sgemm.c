/* CLBlast reference timings for bench/opencl_vs_clblast.sh, on the same OpenCL device as Quarry.
 *   clblast_sgemm gemm M N K REPEATS
 *   clblast_sgemm conv N C H W O K STRIDE PAD REPEATS   (CLBlastSconvgemm, cross-correlation)
 * Device: QUARRY_TEST_OPENCL_DEVICE=opencl:N (devices counted across platforms), default 0.
 * Prints one JSON line: best and median seconds of REPEATS runs after one warm-up (which also
 * lets CLBlast compile its kernels). */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <clblast_c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

static cl_device_id pick_device(cl_platform_id* platform_out) {
    const char* spec = getenv("QUARRY_TEST_OPENCL_DEVICE");
    int want = (spec && strncmp(spec, "opencl:", 7) == 0) ? atoi(spec + 7) : 0;
    cl_platform_id platforms[16];
    cl_uint np = 0;
    if (clGetPlatformIDs(16, platforms, &np) != CL_SUCCESS || np == 0) { fprintf(stderr, "no OpenCL platform\n"); exit(1); }
    for (cl_uint p = 0; p < np; ++p) {
        cl_device_id devs[16];
        cl_uint nd = 0;
        if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 16, devs, &nd) != CL_SUCCESS) continue;
        if (want < (int)nd) { *platform_out = platforms[p]; return devs[want]; }
        want -= nd;
    }
    fprintf(stderr, "no such device\n");
    exit(1);
}

static cl_mem random_buffer(cl_context ctx, cl_command_queue q, size_t n) {
    float* h = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; ++i) h[i] = (float)rand() / RAND_MAX * 2 - 1;
    cl_int err;
    cl_mem m = clCreateBuffer(ctx, CL_MEM_READ_WRITE, n * sizeof(float), NULL, &err);
    if (err != CL_SUCCESS) { fprintf(stderr, "clCreateBuffer(%zu floats): %d\n", n, err); exit(1); }
    clEnqueueWriteBuffer(q, m, CL_TRUE, 0, n * sizeof(float), h, 0, NULL, NULL);
    free(h);
    return m;
}

int main(int argc, char** argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s gemm M N K REPEATS | conv N C H W O K STRIDE PAD REPEATS\n", argv[0]); return 2; }
    cl_platform_id platform;
    cl_device_id device = pick_device(&platform);
    cl_int err;
    cl_context ctx = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    cl_command_queue q = clCreateCommandQueue(ctx, device, 0, &err);
    int is_gemm = strcmp(argv[1], "gemm") == 0;
    if ((is_gemm && argc != 6) || (!is_gemm && argc != 11)) { fprintf(stderr, "bad arguments\n"); return 2; }
    size_t a[9];
    for (int i = 2; i < argc; ++i) a[i - 2] = (size_t)atol(argv[i]);
    int repeats = (int)(is_gemm ? a[3] : a[8]);
    cl_mem x, w, y;
    double flops;
    size_t oh = 0, ow = 0;
    if (is_gemm) {
        x = random_buffer(ctx, q, a[0] * a[2]); w = random_buffer(ctx, q, a[2] * a[1]); y = random_buffer(ctx, q, a[0] * a[1]);
        flops = 2.0 * a[0] * a[1] * a[2];
    } else {
        size_t n = a[0], c = a[1], h = a[2], wd = a[3], o = a[4], k = a[5], s = a[6], p = a[7];
        oh = (h + 2 * p - k) / s + 1; ow = (wd + 2 * p - k) / s + 1;
        x = random_buffer(ctx, q, n * c * h * wd); w = random_buffer(ctx, q, o * c * k * k); y = random_buffer(ctx, q, n * o * oh * ow);
        flops = 2.0 * n * o * oh * ow * c * k * k;
    }
    double* times = malloc(sizeof(double) * (repeats + 1));
    for (int r = -1; r < repeats; ++r) {
        double t0 = now();
        CLBlastStatusCode st;
        if (is_gemm) {
            st = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, a[0], a[1], a[2], 1.0f,
                              x, 0, a[2], w, 0, a[1], 0.0f, y, 0, a[1], &q, NULL);
        } else {
            st = CLBlastSconvgemm(CLBlastKernelModeCrossCorrelation, a[1], a[2], a[3], a[5], a[5], a[7], a[7], a[6], a[6], 1, 1,
                                  a[4], a[0], x, 0, w, 0, y, 0, &q, NULL);
        }
        if (st != CLBlastSuccess) { fprintf(stderr, "CLBlast error %d\n", st); return 1; }
        clFinish(q);
        if (r >= 0) times[r] = now() - t0;
    }
    qsort(times, repeats, sizeof(double), cmp);
    double best = times[0], median = times[repeats / 2];
    if (is_gemm)
        printf("{\"impl\":\"clblast\",\"op\":\"gemm\",\"m\":%zu,\"n\":%zu,\"k\":%zu,\"best_s\":%g,\"median_s\":%g,\"gflops\":%g,\"median_gflops\":%g}\n",
               a[0], a[1], a[2], best, median, flops / best / 1e9, flops / median / 1e9);
    else
        printf("{\"impl\":\"clblast\",\"op\":\"conv\",\"shape\":\"%zu,%zu,%zu,%zu,%zu,%zu,%zu,%zu\",\"best_s\":%g,\"median_s\":%g,\"gflops\":%g,\"median_gflops\":%g}\n",
               a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], best, median, flops / best / 1e9, flops / median / 1e9);
    return 0;
}
