/* sgemm_bound: the matrix-multiply bound of one MNIST training epoch of mlp, measured with
 * OpenBLAS cblas_sgemm (row-major) at the trainer's shapes. Benchmark-only: mlp itself
 * never links OpenBLAS.
 *
 *   sgemm_bound [-t THREADS] [-r REPS] [--keep-env | --core NAME] B:H [B:H ...]
 *   sgemm_bound --cpu          (only the cpu line below)
 *
 * For every global batch B and hidden width H it times one training step's five products
 *     Z1  = X W1      [B x d] [d x H]      dW1 = X^T dZ1   [d x B] [B x H]
 *     Z2  = A1 W2     [B x H] [H x K]      dW2 = A1^T dZ2  [H x B] [B x K]
 *     dA1 = dZ2 W2^T  [B x K] [K x H]
 * (d = 784, K = 10), each in the eight equivalent layouts (either operand stored as it is
 * or transposed, the result computed as it is or transposed), best of REPS calls after a
 * warm-up, and prints per line
 *     bound B=.. h=.. threads=.. steps=.. step_s=.. median_step_s=.. epoch_s=..
 *           epoch_run_s=.. gflops=.. z1_s=.. dw1_s=.. small_s=.. fixed_layout_step_s=..
 *           layouts=z1:..,z2:..,dw2:..,da1:..,dw1:..
 * where step_s is the sum over the products of the fastest layout's best time (the floor),
 * steps = ceil(60000 / B), epoch_s = steps * step_s, epoch_run_s the best of two timed
 * runs of `steps` steps back to back in the chosen layouts (the bound make bench holds
 * mlp's epoch to since 2026-12-02), fixed_layout_step_s the floor's sum with one fixed
 * layout per product (the bound before 2026-12-01), and layouts the layout chosen per
 * product (A and B as stored, N or T, then C or Ct). First it prints
 *     cpu model="..." isa=x86-64+...
 * the CPU model and the vector extensions the CPU has.
 *
 * OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, when set, are read as libopenblas loads, before
 * main runs; they can hold OpenBLAS to slower kernels than the CPU supports. Unless
 * --keep-env is given, the program removes both and re-executes itself, so that OpenBLAS
 * chooses its kernel by the CPU alone; it prints the kernel it chose (core name and
 * build configuration). The variables are changed for this process only. OpenBLAS's own
 * choice can also be too slow: a build older than the CPU does not know its model and
 * falls back to an old kernel (OpenBLAS 0.3.21 on an Intel family 6 model 207 chose
 * Prescott, SSE3: 33 GFLOP/s where its AVX-512 kernel SkylakeX ran 150). --core NAME
 * re-executes with OPENBLAS_CORETYPE=NAME (and OPENBLAS_L2_SIZE removed) instead, so that
 * bench/run can time each kernel of the build that the CPU can run and keep the fastest;
 * the line `openblas core=` names the kernel OpenBLAS then used. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

/* Declared by OpenBLAS's cblas.h; repeated so that another cblas.h still compiles. */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char *openblas_get_config(void);
char *openblas_get_corename(void);

enum { D = 784, K = 10, NTRAIN = 60000 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *alloc_fill(size_t n, unsigned *seed, float scale)
{
    float *p = aligned_alloc(64, ((n * sizeof *p + 63) / 64) * 64);
    if (!p) {
        fprintf(stderr, "sgemm_bound: out of memory (%zu floats)\n", n);
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = scale * (float)((*seed >> 8) & 0xffff) / 65536.0f;
    }
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One product C (m x n) = A (m x k) B (k x n) of a step, in one of its eight equivalent
 * layouts (bits of `layout`): 1, A stored transposed (k x m); 2, B stored transposed
 * (n x k); 4, C computed as its transpose C^T = B^T A^T (n x m). A trainer may store
 * either way each operand it owns (W1 as d x h or h x d, and so on), so the bound takes,
 * product by product, the fastest layout. The buffers hold the same number of floats
 * whatever the layout; only the flags and leading dimensions change. */
typedef struct {
    const char *name;
    int m, n, k;
    const float *A, *B;
    float *C;
} Product;

static void product_run(const Product *p, int layout)
{
    const int ta = layout & 1, tb = (layout >> 1) & 1;
    const int lda = ta ? p->m : p->k, ldb = tb ? p->k : p->n;
    if (!(layout & 4))
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                    tb ? CblasTrans : CblasNoTrans, p->m, p->n, p->k, 1.0f, p->A, lda, p->B,
                    ldb, 0.0f, p->C, p->n);
    else   /* C^T (n x m) = B^T (n x k) A^T (k x m) */
        cblas_sgemm(CblasRowMajor, tb ? CblasNoTrans : CblasTrans,
                    ta ? CblasNoTrans : CblasTrans, p->n, p->m, p->k, 1.0f, p->B, ldb, p->A,
                    lda, 0.0f, p->C, p->m);
}

/* The letters of a layout for the output line: A and B as stored (N or T), then C or Ct. */
static const char *layout_name(int layout)
{
    static const char *const names[8] = {"NN-C", "TN-C", "NT-C", "TT-C",
                                         "NN-Ct", "TN-Ct", "NT-Ct", "TT-Ct"};
    return names[layout & 7];
}

enum { NPROD = 5, NLAYOUT = 8 };

/* An epoch run as a trainer runs it: `steps` steps back to back, each the five products in
 * the layouts `pick` on the same operands (which stay in cache: no data is streamed in,
 * in OpenBLAS's favour), timed as a whole, the best of `epochs` runs. Unlike the sum of
 * each product's best call, it pays for what one product leaves in the caches for the
 * next and for the machine's slow spells, as a trainer's epoch does. */
static double run_epochs(const Product prod[NPROD], const int pick[NPROD], int steps,
                         int epochs)
{
    double best = 1e30;
    for (int e = 0; e < epochs; e++) {
        const double t0 = now();
        for (int s = 0; s < steps; s++)
            for (int p = 0; p < NPROD; p++)
                product_run(&prod[p], pick[p]);
        const double dt = now() - t0;
        if (dt < best)
            best = dt;
    }
    return best;
}

/* One shape: times each product in each layout REPS times after a warm-up, the layouts
 * interleaved (a slow spell of the machine hits all alike); the step bound is the sum over
 * the products of the best time of the fastest layout. Prints one line. */
static void bound(int B, int H, int threads, int reps)
{
    unsigned seed = 12345u;
    float *X = alloc_fill((size_t)B * D, &seed, 1.0f);
    float *W1 = alloc_fill((size_t)D * H, &seed, 0.1f);
    float *Z1 = alloc_fill((size_t)B * H, &seed, 1.0f);   /* also stands in for A1 */
    float *dZ1 = alloc_fill((size_t)B * H, &seed, 0.01f);
    float *dW1 = alloc_fill((size_t)D * H, &seed, 0.0f);
    float *W2 = alloc_fill((size_t)H * K, &seed, 0.1f);
    float *Z2 = alloc_fill((size_t)B * K, &seed, 1.0f);
    float *dZ2 = alloc_fill((size_t)B * K, &seed, 0.01f);
    float *dW2 = alloc_fill((size_t)H * K, &seed, 0.0f);
    float *dA1 = alloc_fill((size_t)B * H, &seed, 0.0f);
    const Product prod[NPROD] = {
        {"z1", B, H, D, X, W1, Z1},      /* Z1 = X W1 */
        {"z2", B, K, H, Z1, W2, Z2},     /* Z2 = A1 W2 */
        {"dw2", H, K, B, Z1, dZ2, dW2},  /* dW2 = A1^T dZ2 */
        {"da1", B, H, K, dZ2, W2, dA1},  /* dA1 = dZ2 W2^T */
        {"dw1", D, H, B, X, dZ1, dW1},   /* dW1 = X^T dZ1 */
    };
    double *t = malloc((size_t)NPROD * NLAYOUT * (size_t)reps * sizeof *t);
    if (!t) exit(1);
    for (int r = -reps / 4 - 3; r < reps; r++)   /* negative r: warm-up */
        for (int p = 0; p < NPROD; p++)
            for (int l = 0; l < NLAYOUT; l++) {
                const double t0 = now();
                product_run(&prod[p], l);
                const double dt = now() - t0;
                if (r >= 0)
                    t[((size_t)p * NLAYOUT + (size_t)l) * (size_t)reps + (size_t)r] = dt;
            }
    double best[NPROD], median[NPROD], asis[NPROD];
    int pick[NPROD];
    for (int p = 0; p < NPROD; p++) {
        best[p] = 1e30;
        for (int l = 0; l < NLAYOUT; l++) {
            double *tl = t + ((size_t)p * NLAYOUT + (size_t)l) * (size_t)reps;
            qsort(tl, (size_t)reps, sizeof *tl, cmp_double);
            if (l == 0)
                asis[p] = tl[0];
            if (tl[0] < best[p])
                best[p] = tl[0], median[p] = tl[reps / 2], pick[p] = l;
        }
    }
    /* The layouts of the earlier bound (one fixed layout per product, as written above
     * with A1^T, X^T and W2^T taken through the Trans flag): z1, z2 NN; dw2 TN; da1 NT;
     * dw1 TN. asis[] holds layout 0 of each product; the fixed-layout sum is printed for
     * comparison. */
    const int fixed[NPROD] = {0, 0, 1, 2, 1};
    double step = 0, step_median = 0, step_fixed = 0;
    for (int p = 0; p < NPROD; p++) {
        step += best[p], step_median += median[p];
        const double *tf = t + ((size_t)p * NLAYOUT + (size_t)fixed[p]) * (size_t)reps;
        step_fixed += tf[0];
    }
    (void)asis;
    const int steps = (NTRAIN + B - 1) / B;
    const double run = run_epochs(prod, pick, steps, 2);
    const double flops = 2.0 * (2.0 * D * H + 3.0 * H * K) * B;   /* per step */
    printf("bound B=%d h=%d threads=%d steps=%d step_s=%.9f median_step_s=%.9f epoch_s=%.6f "
           "epoch_run_s=%.6f gflops=%.2f z1_s=%.9f dw1_s=%.9f small_s=%.9f "
           "fixed_layout_step_s=%.9f layouts=",
           B, H, threads, steps, step, step_median, steps * step, run, flops / step * 1e-9,
           best[0], best[4], best[1] + best[2] + best[3], step_fixed);
    for (int p = 0; p < NPROD; p++)
        printf("%s%s:%s", p ? "," : "", prod[p].name, layout_name(pick[p]));
    printf("\n");
    fflush(stdout);
    free(t);
    free(X); free(W1); free(Z1); free(dZ1); free(dW1);
    free(W2); free(Z2); free(dZ2); free(dW2); free(dA1);
}

/* The CPU model (/proc/cpuinfo) and the vector extensions it has, one line. */
static void print_cpu(void)
{
    char line[512], model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            const char *v = strchr(line, ':') + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            snprintf(model, sizeof model, "%s", v);
            model[strcspn(model, "\n")] = '\0';
            break;
        }
    }
    if (f)
        fclose(f);
    __builtin_cpu_init();
    printf("cpu model=\"%s\" isa=x86-64%s%s%s%s%s%s\n", model,
           __builtin_cpu_supports("sse4.2") ? "+sse4.2" : "",
           __builtin_cpu_supports("avx") ? "+avx" : "",
           __builtin_cpu_supports("avx2") ? "+avx2" : "",
           __builtin_cpu_supports("fma") ? "+fma" : "",
           __builtin_cpu_supports("avx512f") ? "+avx512f" : "",
           __builtin_cpu_supports("avx512dq") ? "+avx512dq" : "");
}

static void usage(void)
{
    fprintf(stderr, "usage: sgemm_bound [-t THREADS] [-r REPS] [--keep-env | --core NAME] B:H [B:H ...] | --cpu\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int threads = 1, reps = 0, keep_env = 0, first = argc;
    const char *want = NULL;   /* --core: the kernel to run */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--keep-env")) keep_env = 1;
        else if (!strcmp(argv[i], "--core") && i + 1 < argc) want = argv[++i];
        else if (!strcmp(argv[i], "--cpu")) { print_cpu(); return 0; }
        else if (argv[i][0] == '-') usage();
        else { first = i; break; }
    }
    if (first >= argc || threads < 1 || reps < 0 || (want && keep_env)) usage();

    /* Re-exec without the variables that pin OpenBLAS's kernel choice (or with the one
     * --core asks for): libopenblas has already read them by now, so changing them in
     * this process would change nothing. */
    const char *ct = getenv("OPENBLAS_CORETYPE"), *l2 = getenv("OPENBLAS_L2_SIZE");
    const int want_differs = want && (!ct || strcmp(ct, want) || l2);
    if (want_differs || (!want && !keep_env && (ct || l2))) {
        if (want) {
            setenv("OPENBLAS_CORETYPE", want, 1);
        } else {
            fprintf(stderr, "sgemm_bound: re-executing without%s%s%s%s\n",
                    ct ? " OPENBLAS_CORETYPE=" : "", ct ? ct : "", l2 ? " OPENBLAS_L2_SIZE=" : "",
                    l2 ? l2 : "");
            unsetenv("OPENBLAS_CORETYPE");
        }
        unsetenv("OPENBLAS_L2_SIZE");
        execv("/proc/self/exe", argv);
        fprintf(stderr, "sgemm_bound: re-exec failed: %s\n", strerror(errno));
        return 1;
    }

    print_cpu();
    openblas_set_num_threads(threads);
    const char *core = openblas_get_corename();
    char *cfg = openblas_get_config();
    /* One token per field for the bench script: core=NAME; the configuration in quotes. */
    printf("openblas core=%s threads=%d coretype_env=%s l2_env=%s config=\"%s\"\n",
           core ? core : "?", openblas_get_num_threads(),
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "unset",
           getenv("OPENBLAS_L2_SIZE") ? getenv("OPENBLAS_L2_SIZE") : "unset",
           cfg ? cfg : "?");

    for (int i = first; i < argc; i++) {
        int B, H;
        char extra;
        if (sscanf(argv[i], "%d:%d%c", &B, &H, &extra) != 2 || B < 1 || H < 1) usage();
        /* Enough repetitions for ~0.2 s of timing per shape at ~100 GFLOP/s, at least 20. */
        int n = reps;
        if (n == 0) {
            double step_flops = 2.0 * (2.0 * D * H + 3.0 * H * K) * B;
            n = (int)(0.2 / (step_flops / 1e11));
            if (n < 20) n = 20;
            if (n > 2000) n = 2000;
        }
        bound(B, H, threads, n);
    }
    return 0;
}
