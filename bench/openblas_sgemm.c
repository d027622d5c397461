/* OpenBLAS SGEMM peer for bench/gemm_vs_openblas.sh: times C = A * B (row-major, no transposes) on
 * random [m,k] x [k,n] matrices, one warm-up then REPEATS runs, and prints the median, in the same
 * format as quarry-bench. Usage: openblas_sgemm M N K THREADS [REPEATS] */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: %s M N K THREADS [REPEATS]\n", argv[0]); return 2; }
    int m = atoi(argv[1]), n = atoi(argv[2]), k = atoi(argv[3]), threads = atoi(argv[4]);
    int repeats = argc > 5 ? atoi(argv[5]) : 10;
    openblas_set_num_threads(threads);
    float *a = aligned_alloc(64, sizeof(float) * (size_t)m * k + 64);
    float *b = aligned_alloc(64, sizeof(float) * (size_t)k * n + 64);
    float *c = aligned_alloc(64, sizeof(float) * (size_t)m * n + 64);
    srand(42);
    for (size_t i = 0; i < (size_t)m * k; i++) a[i] = 2.0f * rand() / RAND_MAX - 1.0f;
    for (size_t i = 0; i < (size_t)k * n; i++) b[i] = 2.0f * rand() / RAND_MAX - 1.0f;
    double *times = malloc(sizeof(double) * repeats);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
    for (int r = 0; r < repeats; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
        times[r] = now() - t0;
    }
    qsort(times, repeats, sizeof(double), cmp);
    double med = times[repeats / 2];
    printf("openblas m=%d n=%d k=%d threads=%d median_ms=%.3f gflops=%.1f core=%s config=%s\n", m, n, k,
           openblas_get_num_threads(), med * 1e3, 2.0 * m * n * k / med * 1e-9, openblas_get_corename(),
           openblas_get_config());
    return 0;
}
