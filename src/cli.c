/* cli: `mlp inspect` and `mlp eval`, the checkpoint subcommands. Contract: include/cli.h.
 *
 * Reading the file is checkpoint's (ckpt_load validates format, version and shapes), the
 * forward pass is model's, the test set is data's: this file parses arguments and prints.
 * No MPI: both commands run as a plain process.
 */
#include "cli.h"

#include "buildinfo.h"
#include "checkpoint.h"
#include "config.h"
#include "data.h"
#include "fsafe.h"
#include "kernels.h"
#include "model.h"

#include <errno.h>
#include <hdf5.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLI_CELL 40          /* bytes per table cell, NUL included */
#define CLI_EVAL_ROWS 1024   /* samples per forward block in eval */

/* ------------------------------------------------------------------ messages */

/* One line of a message: text from files (paths, attributes, config lines) never reaches
 * the terminal raw, so a file cannot end the line or send escape sequences. */
static void cli_line(FILE *out, const char *kind, const char *msg)
{
    char safe[4 * 2 * CKPT_ERR_MAX];
    ckpt_escape(safe, sizeof safe, msg);
    fprintf(out, "mlp: %s: %s\n", kind, safe);
}

/* s with control characters escaped (ckpt_escape: at most 4 bytes per byte), to stdout. */
static void cli_put(const char *s)
{
    size_t n = strlen(s);
    char *buf = n < SIZE_MAX / 4 ? malloc(4 * n + 1) : NULL;
    if (!buf) {                         /* no memory: still nothing raw reaches the terminal */
        for (; *s; s++)
            putchar(*s >= 0x20 && *s < 0x7f ? *s : '?');
        return;
    }
    ckpt_escape(buf, 4 * n + 1, s);
    fputs(buf, stdout);
    free(buf);
}

/* The one error line of a failed command. */
__attribute__((format(printf, 1, 2)))
static void cli_error(const char *fmt, ...)
{
    char msg[2 * CKPT_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cli_line(stderr, "error", msg);
}

static const char *const cli_usage_inspect = "usage: mlp inspect CHECKPOINT.h5\n";
static const char *const cli_usage_eval = "usage: mlp eval CHECKPOINT.h5 [CONFIG.ini]\n";
static const char *const cli_usage_reseal =
    "usage: mlp reseal CHECKPOINT.h5\n"
    "After a deliberate edit (h5py) of a checkpoint, whose sealed header then no longer\n"
    "matches: checks the file as a load would and, if it passes, rewrites its header.\n";

/* Positional arguments of a subcommand into pos[0..max). Returns -1 to go on, else the
 * exit status: 0 after --help, 2 after a usage error (message and usage on stderr). */
static int cli_args(int argc, char **argv, const char *usage, int min, int max,
                    const char **pos, int *npos)
{
    int n = 0, options = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options && !strcmp(a, "--")) {
            options = 0;
        } else if (options && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            fputs(usage, stdout);
            return 0;
        } else if (options && a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "mlp %s: unknown option '%s'\n%s", argv[0], a, usage);
            return 2;
        } else if (n == max) {
            fprintf(stderr, "mlp %s: unexpected argument '%s'\n%s", argv[0], a, usage);
            return 2;
        } else {
            pos[n++] = a;
        }
    }
    if (n < min) {
        fprintf(stderr, "mlp %s: missing CHECKPOINT.h5\n%s", argv[0], usage);
        return 2;
    }
    *npos = n;
    return -1;
}

/* stdout may be a full disk or a closed pipe: a report cut short is an error. */
static int cli_finish_stdout(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        cli_error("standard output: write failed: %s", strerror(errno));
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ aligned tables */

/* Cells as strings, printed with every column as wide as its widest cell, numbers
 * right-aligned; the first column left-aligned when it holds names. */
typedef struct {
    size_t rows, cols;
    int names_first;   /* left-align column 0 */
    int uniform;       /* columns 1..cols-2 share one width (a matrix with a totals column) */
    char *cells;       /* (rows, cols, CLI_CELL) */
} CliTable;

static int cli_table_init(CliTable *t, size_t rows, size_t cols, int names_first)
{
    t->rows = rows, t->cols = cols, t->names_first = names_first, t->uniform = 0;
    t->cells = NULL;
    if (cols && rows > SIZE_MAX / cols / CLI_CELL)
        return -1;
    t->cells = calloc(rows * cols, CLI_CELL);
    return t->cells ? 0 : -1;
}

static void cli_table_free(CliTable *t)
{
    free(t->cells);
    t->cells = NULL;
}

__attribute__((format(printf, 4, 5)))
static void cli_cell(CliTable *t, size_t r, size_t c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->cells + (r * t->cols + c) * CLI_CELL, CLI_CELL, fmt, ap);
    va_end(ap);
}

/* A measured value, or "-" where it was not measured (NaN in the history). */
static void cli_cell_num(CliTable *t, size_t r, size_t c, const char *fmt, double v)
{
    if (isnan(v))
        cli_cell(t, r, c, "-");
    else
        cli_cell(t, r, c, fmt, v);
}

static void cli_table_print(const CliTable *t, const char *indent)
{
    size_t width[t->cols ? t->cols : 1];
    for (size_t c = 0; c < t->cols; c++) {
        width[c] = 0;
        for (size_t r = 0; r < t->rows; r++) {
            size_t n = strlen(t->cells + (r * t->cols + c) * CLI_CELL);
            if (n > width[c])
                width[c] = n;
        }
    }
    if (t->uniform) {
        size_t wmax = 0;
        for (size_t c = 1; c + 1 < t->cols; c++)
            wmax = width[c] > wmax ? width[c] : wmax;
        for (size_t c = 1; c + 1 < t->cols; c++)
            width[c] = wmax;
    }
    for (size_t r = 0; r < t->rows; r++) {
        fputs(indent, stdout);
        for (size_t c = 0; c < t->cols; c++) {
            const char *s = t->cells + (r * t->cols + c) * CLI_CELL;
            if (c == 0)
                printf(t->names_first ? "%-*s" : "%*s", (int)width[c], s);
            else
                printf("  %*s", (int)width[c], s);
        }
        putchar('\n');
    }
}

/* ------------------------------------------------------------------ inspect */

typedef struct {
    double min, max, mean, std;   /* over the finite values; std is the population std */
    size_t nonfinite;
} CliStats;

static CliStats cli_stats(const float *x, size_t n)
{
    CliStats s = {NAN, NAN, NAN, NAN, 0};
    double sum = 0;
    size_t finite = 0;
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        if (!isfinite(v)) {
            s.nonfinite++;
            continue;
        }
        if (finite == 0 || v < s.min)
            s.min = v;
        if (finite == 0 || v > s.max)
            s.max = v;
        sum += v;
        finite++;
    }
    if (finite == 0)
        return s;
    s.mean = sum / (double)finite;
    /* Two passes: the sum of squared deviations does not cancel the way E[x^2]-E[x]^2 can. */
    double ss = 0;
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        if (isfinite(v))
            ss += (v - s.mean) * (v - s.mean);
    }
    s.std = sqrt(ss / (double)finite);
    return s;
}

/* The config text, each line indented and escaped, blank lines left blank. */
static void cli_print_indented(const char *text, const char *indent)
{
    const char *p = text;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > 0) {
            char *line = strndup(p, n);
            fputs(indent, stdout);
            cli_put(line ? line : "?");
            free(line);
        }
        putchar('\n');
        p += n + (e ? 1 : 0);
    }
}

/* "  name             = value" for a string attribute of the file, escaped. */
static void cli_attr_str(const char *name, const char *value)
{
    printf("  %-16s = ", name);
    cli_put(value);
    putchar('\n');
}

static int cli_print_history(const CkptHistory *h)
{
    printf("\nhistory (%zu epoch%s):\n", h->len, h->len == 1 ? "" : "s");
    if (h->len == 0) {
        printf("  (no epoch completed)\n");
        return 0;
    }
    CliTable t;
    if (cli_table_init(&t, h->len + 1, 5, 0) != 0) {
        cli_error("out of memory for the history table (%zu rows)", h->len);
        return -1;
    }
    const char *head[5] = {"epoch", "train_loss", "train_acc", "test_acc", "seconds"};
    for (size_t c = 0; c < 5; c++)
        cli_cell(&t, 0, c, "%s", head[c]);
    for (size_t i = 0; i < h->len; i++) {
        cli_cell(&t, i + 1, 0, "%" PRId64, h->epoch[i]);
        cli_cell_num(&t, i + 1, 1, "%.6f", h->train_loss[i]);
        cli_cell_num(&t, i + 1, 2, "%.4f", h->train_acc[i]);
        cli_cell_num(&t, i + 1, 3, "%.4f", h->test_acc[i]);
        cli_cell_num(&t, i + 1, 4, "%.2f", h->seconds[i]);
    }
    cli_table_print(&t, "  ");
    cli_table_free(&t);
    return 0;
}

static int cli_print_weights(const CkptState *s)
{
    const struct {
        const char *name;
        const float *x;
        size_t n;
    } w[4] = {
        {"W1", s->W1, (size_t)(s->d * s->hidden)},
        {"b1", s->b1, (size_t)s->hidden},
        {"W2", s->W2, (size_t)(s->hidden * s->classes)},
        {"b2", s->b2, (size_t)s->classes},
    };
    CliTable t;
    if (cli_table_init(&t, 5, 6, 1) != 0) {
        cli_error("out of memory for the weight table");
        return -1;
    }
    const char *head[6] = {"tensor", "min", "max", "mean", "std", "nonfinite"};
    for (size_t c = 0; c < 6; c++)
        cli_cell(&t, 0, c, "%s", head[c]);
    for (size_t i = 0; i < 4; i++) {
        CliStats st = cli_stats(w[i].x, w[i].n);
        cli_cell(&t, i + 1, 0, "%s", w[i].name);
        cli_cell_num(&t, i + 1, 1, "%.6g", st.min);
        cli_cell_num(&t, i + 1, 2, "%.6g", st.max);
        cli_cell_num(&t, i + 1, 3, "%.6g", st.mean);
        cli_cell_num(&t, i + 1, 4, "%.6g", st.std);
        cli_cell(&t, i + 1, 5, "%zu", st.nonfinite);
    }
    printf("\nweights (statistics over the finite values; std is the population std):\n");
    cli_table_print(&t, "  ");
    cli_table_free(&t);
    return 0;
}

int cli_inspect(int argc, char **argv)
{
    const char *pos[1];
    int npos = 0;
    int rc = cli_args(argc, argv, cli_usage_inspect, 1, 1, pos, &npos);
    if (rc >= 0)
        return rc;
    const char *path = pos[0];

    CkptState s;
    char err[CKPT_ERR_MAX];
    if (ckpt_load(path, &s, err, sizeof err) != 0) {
        cli_error("%s", err);
        return 1;
    }
    const uint64_t d = s.d, h = s.hidden, k = s.classes;
    printf("file: ");
    cli_put(path);
    putchar('\n');
    printf("shapes (float32):\n");
    printf("  W1  [%" PRIu64 ",%" PRIu64 "]\n", d, h);
    printf("  b1  [%" PRIu64 "]\n", h);
    printf("  W2  [%" PRIu64 ",%" PRIu64 "]\n", h, k);
    printf("  b2  [%" PRIu64 "]\n", k);

    /* Root attributes in the order of include/checkpoint.h (format is the value ckpt_load
     * has just checked, format_version the file's), the mid-epoch position after `step`. */
    printf("attributes:\n");
    printf("  %-16s = %s\n", "format", CKPT_FORMAT);
    printf("  %-16s = %" PRId64 "\n", "format_version", s.format_version);
    printf("  %-16s = %" PRIu64 "\n", "d", d);
    printf("  %-16s = %" PRIu64 "\n", "hidden", h);
    printf("  %-16s = %" PRIu64 "\n", "classes", k);
    printf("  %-16s = %" PRId64 "\n", "epoch", s.epoch);
    printf("  %-16s = %" PRId64 "\n", "step", s.step);
    printf("  %-16s = %" PRId64 "\n", "epoch_step", s.epoch_step);
    printf("  %-16s = %" PRId64 "\n", "epoch_correct", s.epoch_correct);
    printf("  %-16s = %.15g\n", "epoch_loss", s.epoch_loss);
    printf("  %-16s = %.15g\n", "epoch_seconds", s.epoch_seconds);
    printf("  %-16s = %" PRIu64 "\n", "seed", s.seed);
    printf("  %-16s = %" PRId64 "\n", "batch", s.batch);
    printf("  %-16s = %.15g\n", "lr", s.lr);
    cli_attr_str("reduce", s.reduce);
    printf("  %-16s = %" PRId64 "\n", "ranks", s.ranks);
    printf("  %-16s = %" PRId64 "\n", "threads_per_rank", s.threads_per_rank);
    cli_attr_str("created", s.created);
    cli_attr_str("mlp_version", s.mlp_version);
    cli_attr_str("build_commit", s.build_commit);
    cli_attr_str("build_compiler", s.build_compiler);
    cli_attr_str("build_flags", s.build_flags);
    cli_attr_str("build_isa", s.build_isa);
    cli_attr_str("cpu_model", s.cpu_model);
    printf("  %-16s = %" PRId64 "\n", "nodes", s.nodes);
    printf("  %-16s = %" PRId64 "\n", "train_samples", s.train_samples);
    printf("  %-16s = %" PRId64 "\n", "test_samples", s.test_samples);
    printf("  %-16s = %08" PRIx64 "\n", "train_crc", (uint64_t)s.train_crc);
    cli_attr_str("input_type", s.input_type);
    cli_attr_str("normalize", s.normalize);
    if (s.x_mean) {   /* finite, std > 0: ckpt_load checked */
        double lo[2] = {s.x_mean[0], s.x_std[0]}, hi[2] = {s.x_mean[0], s.x_std[0]};
        for (uint64_t j = 1; j < d; j++) {
            lo[0] = fmin(lo[0], s.x_mean[j]), hi[0] = fmax(hi[0], s.x_mean[j]);
            lo[1] = fmin(lo[1], s.x_std[j]), hi[1] = fmax(hi[1], s.x_std[j]);
        }
        printf("  standardisation: /model/x_mean, /model/x_std [%" PRIu64 "] float64: mean "
               "%.6g..%.6g, std %.6g..%.6g\n", d, lo[0], hi[0], lo[1], hi[1]);
    }
    printf("  config:\n");
    cli_print_indented(s.config ? s.config : "", "    ");

    rc = 0;
    if (cli_print_history(&s.history) != 0 || cli_print_weights(&s) != 0)
        rc = 1;
    ckpt_state_free(&s);
    if (cli_finish_stdout() != 0)
        rc = 1;
    return rc;
}

/* ------------------------------------------------------------------ inputs */

/* Read a data set for a checkpoint's model, as training held it: float32 when the
 * checkpoint says so (any HDF5 type, or standardised), uint8 pixels (/ 255) when it was
 * trained on them (then the file must hold uint8 too: float values would reach a model
 * that expects 0..255 / 255), the file's own type for a file of an older mlp. The
 * checkpoint's standardisation, if any, is applied. ds is owned by the caller (data_free)
 * on success; 0 or -1 after one error line (a reader's error ends with note). */
static int cli_read_inputs(const char *ckpt_path, const CkptState *s, const DataSource *src,
                           const char *note, Dataset *ds, KernelsInput *in)
{
    char err[DATA_ERR_MAX];
    DataShape shape;
    memset(ds, 0, sizeof *ds);
    if (data_probe_source(&shape, src, err, sizeof err) != 0) {
        cli_error("%s%s", err, note);
        return -1;
    }
    DataType type = shape.native;
    if (!strcmp(s->input_type, "float32") || s->x_mean)
        type = DATA_F32;
    else if (!strcmp(s->input_type, "uint8") && shape.native != DATA_U8) {
        cli_error("%s: holds %s features but checkpoint %s was trained on uint8 inputs "
                  "(scaled by 1/255): convert them the same way", src->x_path, shape.stored,
                  ckpt_path);
        return -1;
    }
    if (shape.d != s->d) {
        if (shape.rows > 1)
            cli_error("%s: images are %" PRIu32 "x%" PRIu32 " = %zu pixels but checkpoint %s "
                      "has d = %" PRIu64, src->x_path, shape.rows, shape.cols, shape.d,
                      ckpt_path, s->d);
        else
            cli_error("%s: %zu features per sample but checkpoint %s has d = %" PRIu64,
                      src->x_path, shape.d, ckpt_path, s->d);
        return -1;
    }
    if (data_read_into(ds, src, (int)s->classes, type, 1, NULL, 0, err, sizeof err) != 0) {
        cli_error("%s%s", err, note);
        return -1;
    }
    if (s->x_mean)
        data_standardize_apply(ds->features, ds->n, ds->d, s->x_mean, s->x_std);
    *in = type == DATA_U8 ? (KernelsInput){.u8 = ds->images}
                          : (KernelsInput){.f32 = ds->features};
    return 0;
}

/* The checkpoint's weights into p (allocated; model_params_free). 0, or -1 after the line. */
static int cli_params(const char *path, const CkptState *s, Params *p)
{
    if (model_params_init(p, (size_t)s->d, (size_t)s->hidden, (size_t)s->classes) != 0) {
        cli_error("%s: out of memory for the parameters (d=%" PRIu64 " hidden=%" PRIu64
                  " classes=%" PRIu64 ")", path, s->d, s->hidden, s->classes);
        return -1;
    }
    memcpy(p->W1, s->W1, p->d * p->h * sizeof(float));
    memcpy(p->b1, s->b1, p->h * sizeof(float));
    memcpy(p->W2, s->W2, p->h * p->k * sizeof(float));
    memcpy(p->b2, s->b2, p->k * sizeof(float));
    return 0;
}

/* ------------------------------------------------------------------ eval */

/* A diverged run's weights (NaN or Inf) would give a meaningless loss and accuracy: warn,
 * naming the count per tensor, and fail (exit status 1) rather than print numbers. */
static int cli_check_finite(const char *path, const CkptState *s)
{
    const float *x[4] = {s->W1, s->b1, s->W2, s->b2};
    const size_t n[4] = {(size_t)(s->d * s->hidden), (size_t)s->hidden,
                         (size_t)(s->hidden * s->classes), (size_t)s->classes};
    size_t bad[4], total = 0;
    for (int t = 0; t < 4; t++) {
        bad[t] = 0;
        for (size_t i = 0; i < n[t]; i++)
            bad[t] += !isfinite(x[t][i]);
        total += bad[t];
    }
    if (total == 0)
        return 0;
    char msg[2 * CKPT_ERR_MAX];
    snprintf(msg, sizeof msg, "%s: %zu non-finite weight%s (NaN or Inf: W1 %zu, b1 %zu, W2 %zu, "
             "b2 %zu): the run diverged, so the test loss and accuracy would mean nothing; not "
             "evaluated (mlp inspect shows the statistics)", path, total, total == 1 ? "" : "s",
             bad[0], bad[1], bad[2], bad[3]);
    cli_line(stderr, "warning", msg);
    return -1;
}

/* The [data] paths of the config stored in the checkpoint: config_load reads files only,
 * so the text goes through a private temporary file that is removed at once. */
static int cli_stored_config(const char *ckpt_path, const char *text, Config *cfg)
{
    if (!text || !text[strspn(text, " \t\r\n")]) {
        cli_error("%s: the checkpoint stores no config text; give CONFIG.ini", ckpt_path);
        return -1;
    }
    const char *dir = getenv("TMPDIR");
    char tmp[CONFIG_PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%s/mlp-eval-config.XXXXXX", dir && *dir ? dir : "/tmp");
    if (n < 0 || (size_t)n >= sizeof tmp) {
        cli_error("TMPDIR '%s': path too long for a temporary file", dir);
        return -1;
    }
    int fd = mkstemp(tmp);
    if (fd < 0) {
        cli_error("%s: cannot create a temporary file for the stored config: %s", tmp,
                  strerror(errno));
        return -1;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        cli_error("%s: fdopen failed: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    size_t len = strlen(text);
    int wrote = fwrite(text, 1, len, f) == len;
    int e = errno;
    if (fclose(f) != 0 && wrote) {
        wrote = 0;
        e = errno;
    }
    if (!wrote) {
        cli_error("%s: cannot write the stored config: %s", tmp, strerror(e));
        unlink(tmp);
        return -1;
    }
    char err[CONFIG_ERR_MAX];
    int rc = config_load(cfg, tmp, 0, NULL, err, sizeof err);
    unlink(tmp);
    if (rc != 0) {
        cli_error("%s: the config stored in the checkpoint does not load: %s", ckpt_path, err);
        return -1;
    }
    return 0;
}

static int cli_print_confusion(const int64_t *conf, size_t k)
{
    CliTable t;
    if (cli_table_init(&t, k + 2, k + 2, 0) != 0) {
        cli_error("out of memory for a %zu x %zu confusion table", k, k);
        return -1;
    }
    t.uniform = 1;
    cli_cell(&t, 0, 0, "true\\pred");
    for (size_t j = 0; j < k; j++)
        cli_cell(&t, 0, j + 1, "%zu", j);
    cli_cell(&t, 0, k + 1, "total");
    int64_t all = 0;
    for (size_t i = 0; i < k; i++) {
        int64_t row = 0;
        cli_cell(&t, i + 1, 0, "%zu", i);
        for (size_t j = 0; j < k; j++) {
            cli_cell(&t, i + 1, j + 1, "%" PRId64, conf[i * k + j]);
            row += conf[i * k + j];
        }
        cli_cell(&t, i + 1, k + 1, "%" PRId64, row);
        all += row;
    }
    cli_cell(&t, k + 1, 0, "total");
    for (size_t j = 0; j < k; j++) {
        int64_t col = 0;
        for (size_t i = 0; i < k; i++)
            col += conf[i * k + j];
        cli_cell(&t, k + 1, j + 1, "%" PRId64, col);
    }
    cli_cell(&t, k + 1, k + 1, "%" PRId64, all);
    printf("confusion matrix (rows: true label, columns: predicted label):\n");
    cli_table_print(&t, "  ");
    cli_table_free(&t);
    return 0;
}

int cli_eval(int argc, char **argv)
{
    const char *pos[2];
    int npos = 0;
    int rc = cli_args(argc, argv, cli_usage_eval, 1, 2, pos, &npos);
    if (rc >= 0)
        return rc;
    const char *path = pos[0], *config_path = npos > 1 ? pos[1] : NULL;

    CkptState s;
    Config cfg;
    Dataset ds;
    KernelsInput in;
    Params p;
    Workspace w;
    int64_t *conf = NULL;
    char err[CKPT_ERR_MAX > DATA_ERR_MAX ? CKPT_ERR_MAX : DATA_ERR_MAX];
    char xname[600], yname[600];
    int have_s = 0, have_ds = 0, have_p = 0, have_w = 0;
    rc = 1;

    if (ckpt_load(path, &s, err, sizeof err) != 0) {
        cli_error("%s", err);
        goto done;
    }
    have_s = 1;
    if (cli_check_finite(path, &s) != 0)
        goto done;
    if (config_path) {
        char cerr[CONFIG_ERR_MAX];
        if (config_load(&cfg, config_path, 0, NULL, cerr, sizeof cerr) != 0) {
            cli_error("%s", cerr);
            goto done;
        }
    } else if (cli_stored_config(path, s.config, &cfg) != 0) {
        goto done;
    }
    const size_t k = (size_t)s.classes;
    if (s.classes > KERNELS_MAX_CLASSES) {
        cli_error("%s: %" PRIu64 " classes; mlp evaluates at most %d", path, s.classes,
                  KERNELS_MAX_CLASSES);
        goto done;
    }
    data_dataset_path(xname, sizeof xname, cfg.data.test_group, cfg.data.x_dataset);
    data_dataset_path(yname, sizeof yname, cfg.data.test_group, cfg.data.y_dataset);
    const int format = data_format_parse(cfg.data.format);
    const DataSource src = {cfg.data.test_images, cfg.data.test_labels, xname, yname,
                            format < 0 ? DATA_FORMAT_AUTO : (DataFormat)format, 0};
    char note[CONFIG_PATH_MAX + 160] = "";
    if (!config_path)   /* the stored paths are as the training run saw them */
        snprintf(note, sizeof note, " (test set named by the config stored in %s; relative "
                 "paths resolve against the current directory; or give CONFIG.ini)", path);
    if (cli_read_inputs(path, &s, &src, note, &ds, &in) != 0)
        goto done;
    have_ds = 1;
    if (ds.n == 0) {
        cli_error("%s: no test samples", cfg.data.test_images);
        goto done;
    }
    if (cli_params(path, &s, &p) != 0)
        goto done;
    have_p = 1;
    size_t rows = ds.n < CLI_EVAL_ROWS ? ds.n : CLI_EVAL_ROWS;
    if (model_workspace_init(&w, &p, rows) != 0) {
        cli_error("out of memory for the evaluation workspace (%zu samples)", rows);
        goto done;
    }
    have_w = 1;
    conf = calloc(k * k, sizeof *conf);
    if (!conf) {
        cli_error("out of memory for a %zu x %zu confusion matrix", k, k);
        goto done;
    }
    double loss_sum = 0;
    model_confusion(&p, &in, ds.labels, 0, ds.n, &w, conf, &loss_sum);
    int64_t correct = 0;
    for (size_t i = 0; i < k; i++)
        correct += conf[i * k + i];

    printf("checkpoint:  ");
    cli_put(path);
    printf(" (epoch %" PRId64 ", step %" PRId64 "; d=%" PRIu64 " hidden=%" PRIu64 " classes=%"
           PRIu64 ")\n", s.epoch, s.step, s.d, s.hidden, s.classes);
    printf("config:      ");
    cli_put(config_path ? config_path : "the one stored in the checkpoint");
    printf("\ntest images: ");
    cli_put(cfg.data.test_images);     /* from the config stored in the file, maybe */
    printf("\ntest labels: ");
    cli_put(cfg.data.test_labels);
    putchar('\n');
    printf("samples:     %zu\n", ds.n);
    printf("loss:        %.6f (mean cross-entropy)\n", loss_sum / (double)ds.n);
    printf("accuracy:    %.4f (%" PRId64 " / %zu)\n", (double)correct / (double)ds.n, correct,
           ds.n);
    putchar('\n');
    if (cli_print_confusion(conf, k) != 0)
        goto done;
    rc = cli_finish_stdout();
done:
    free(conf);
    if (have_w)
        model_workspace_free(&w);
    if (have_p)
        model_params_free(&p);
    if (have_ds)
        data_free(&ds);
    if (have_s)
        ckpt_state_free(&s);
    return rc;
}

/* ------------------------------------------------------------------ predict */

static const char *const cli_usage_predict =
    "usage: mlp predict CHECKPOINT.h5 INPUT [--out FILE.h5] [--features NAME] [--labels NAME]\n"
    "For every sample of INPUT (HDF5 or IDX, d features as the checkpoint's model), the\n"
    "predicted class and the K class probabilities: CSV on stdout (index,predicted,p0..pK-1),\n"
    "or HDF5 with --out (/predicted, /probabilities). The checkpoint's normalisation is\n"
    "applied. HDF5: features in dataset NAME (default /X, the checkpoint's x_dataset); labels\n"
    "(default /y) used when present. IDX: --labels FILE, a label file. With labels, the\n"
    "accuracy too (stderr with CSV output, stdout with --out).\n";

/* Prediction of block rows [0, n) of the workspace, whose A1 the kernel has filled (and
 * correct[], when labels): z by the same plain loop as model_confusion, so that with labels
 * the class is eval's exactly (the kernel's verdict when right, else the argmax over the
 * other classes); without labels the argmax of z, first index on ties. Probabilities:
 * softmax(z) in double. pred (n); prob (n, k). */
static void cli_predict_block(const Params *p, const Workspace *w, const uint8_t *labels,
                              size_t n, int32_t *pred, float *prob)
{
    const size_t h = p->h, k = p->k;
    float z[KERNELS_MAX_CLASSES];
    for (size_t r = 0; r < n; r++) {
        const float *a = w->A1 + r * h;   /* (h) */
        for (size_t j = 0; j < k; j++)
            z[j] = p->b2[j];
        for (size_t i = 0; i < h; i++)
            for (size_t j = 0; j < k; j++)
                z[j] += a[i] * p->W2[i * k + j];
        size_t best = 0;
        if (labels != NULL) {
            const size_t y = labels[w->idx[r]];
            best = y;
            if (!w->correct[r]) {
                best = y == 0 ? 1 : 0;
                for (size_t j = 0; j < k; j++)
                    if (j != y && z[j] > z[best])
                        best = j;
            }
        } else {
            for (size_t j = 1; j < k; j++)
                if (z[j] > z[best])
                    best = j;
        }
        pred[r] = (int32_t)best;
        double zmax = z[0], sum = 0;
        for (size_t j = 1; j < k; j++)
            if (z[j] > zmax)
                zmax = z[j];
        double e[KERNELS_MAX_CLASSES];
        for (size_t j = 0; j < k; j++)
            sum += e[j] = exp((double)z[j] - zmax);
        for (size_t j = 0; j < k; j++)
            prob[r * k + j] = (float)(e[j] / sum);
    }
}

/* /predicted (n) int32, /probabilities (n, k) float32, /labels (n) when known, and the
 * accuracy as a root attribute. Written to a temporary beside out, closed, then renamed
 * over out (fsafe's naming), so that a failure never leaves a half-written file there. */
static int cli_predict_h5(const char *out, const int32_t *pred, const float *prob,
                          const uint8_t *labels, size_t n, size_t k, double accuracy)
{
    hid_t file = H5I_INVALID_HID, space = H5I_INVALID_HID, aspace = H5I_INVALID_HID;
    int rc = -1;
    const hsize_t dims[2] = {n, k};
    H5E_auto2_t func;
    void *data;
    char tmp[FSAFE_PATH_MAX], err[FSAFE_PATH_MAX + 256];
    if (fsafe_temp_path(out, tmp, sizeof tmp, err, sizeof err) != 0) {
        cli_error("%s", err);
        return -1;
    }
    const int saved = H5Eget_auto2(H5E_DEFAULT, &func, &data) >= 0;
    (void)H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if ((file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
        cli_error("%s: cannot create the HDF5 output file", tmp);
        goto done;
    }
    const struct { const char *name; int rank; hid_t ftype, mtype; const void *buf; } sets[3] = {
        {"predicted", 1, H5T_STD_I32LE, H5T_NATIVE_INT32, pred},
        {"probabilities", 2, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, prob},
        {"labels", 1, H5T_STD_U8LE, H5T_NATIVE_UINT8, labels},
    };
    for (int i = 0; i < 3; i++) {
        if (sets[i].buf == NULL)
            continue;
        space = H5Screate_simple(sets[i].rank, dims, NULL);
        hid_t dset = space < 0 ? H5I_INVALID_HID
                               : H5Dcreate2(file, sets[i].name, sets[i].ftype, space,
                                            H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        const int ok = dset >= 0 && H5Dwrite(dset, sets[i].mtype, H5S_ALL, H5S_ALL,
                                             H5P_DEFAULT, sets[i].buf) >= 0;
        if (dset >= 0)
            H5Dclose(dset);
        if (space >= 0)
            H5Sclose(space);
        space = H5I_INVALID_HID;
        if (!ok) {
            cli_error("%s: cannot write dataset /%s", out, sets[i].name);
            goto done;
        }
    }
    if (labels != NULL) {
        aspace = H5Screate(H5S_SCALAR);
        hid_t attr = aspace < 0 ? H5I_INVALID_HID
                                : H5Acreate2(file, "accuracy", H5T_IEEE_F64LE, aspace,
                                             H5P_DEFAULT, H5P_DEFAULT);
        const int ok = attr >= 0 && H5Awrite(attr, H5T_NATIVE_DOUBLE, &accuracy) >= 0;
        if (attr >= 0)
            H5Aclose(attr);
        if (!ok) {
            cli_error("%s: cannot write attribute accuracy", out);
            goto done;
        }
    }
    rc = 0;
done:
    if (aspace >= 0)
        H5Sclose(aspace);
    if (file >= 0 && H5Fclose(file) < 0 && rc == 0) {
        cli_error("%s: cannot close the HDF5 output file (disk full?)", out);
        rc = -1;
    }
    if (rc == 0 && rename(tmp, out) != 0) {
        cli_error("%s: cannot rename to %s: %s", tmp, out, strerror(errno));
        rc = -1;
    }
    if (rc != 0 && file >= 0)
        unlink(tmp);
    if (saved)
        (void)H5Eset_auto2(H5E_DEFAULT, func, data);
    return rc;
}

int cli_predict(int argc, char **argv)
{
    const char *pos[2] = {NULL, NULL}, *out = NULL, *features = NULL, *labels_opt = NULL;
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **opt = !strcmp(a, "--out") ? &out : !strcmp(a, "--features") ? &features
                         : !strcmp(a, "--labels") ? &labels_opt : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(cli_usage_predict, stdout);
            return 0;
        } else if (opt && i + 1 < argc) {
            *opt = argv[++i];
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "mlp predict: %s '%s'\n%s", opt ? "missing value after" :
                    "unknown option", a, cli_usage_predict);
            return 2;
        } else if (npos == 2) {
            fprintf(stderr, "mlp predict: unexpected argument '%s'\n%s", a, cli_usage_predict);
            return 2;
        } else {
            pos[npos++] = a;
        }
    }
    if (npos < 2) {
        fprintf(stderr, "mlp predict: missing %s\n%s", npos ? "INPUT" : "CHECKPOINT.h5",
                cli_usage_predict);
        return 2;
    }
    const char *path = pos[0], *input = pos[1];
    CkptState s;
    Config cfg;
    Dataset ds;
    KernelsInput in;
    Params p;
    Workspace w;
    int32_t *pred = NULL;
    float *prob = NULL;
    char err[CKPT_ERR_MAX], xname[600], yname[600];
    int have_s = 0, have_ds = 0, have_p = 0, have_w = 0, rc = 1;

    if (ckpt_load(path, &s, err, sizeof err) != 0) {
        cli_error("%s", err);
        goto done;
    }
    have_s = 1;
    if (cli_check_finite(path, &s) != 0)
        goto done;
    if (s.classes > KERNELS_MAX_CLASSES || s.classes < 2) {
        cli_error("%s: %" PRIu64 " classes; mlp predicts 2..%d", path, s.classes,
                  KERNELS_MAX_CLASSES);
        goto done;
    }
    /* Dataset names: the options, else the training run's names at the file's root. */
    config_defaults(&cfg);
    if (s.config && s.config[strspn(s.config, " \t\r\n")] &&
        cli_stored_config(path, s.config, &cfg) != 0)
        goto done;
    data_dataset_path(xname, sizeof xname, "/", features ? features : cfg.data.x_dataset);
    data_dataset_path(yname, sizeof yname, "/", labels_opt ? labels_opt : cfg.data.y_dataset);
    DataSource src = {input, input, xname, yname, DATA_FORMAT_AUTO, labels_opt == NULL};
    if (data_format_of(input) != DATA_FORMAT_HDF5) {
        src.y_path = labels_opt;   /* IDX: --labels names the label file */
        src.y_optional = 0;
    }
    if (cli_read_inputs(path, &s, &src, "", &ds, &in) != 0)
        goto done;
    have_ds = 1;
    if (cli_params(path, &s, &p) != 0)
        goto done;
    have_p = 1;
    const size_t n = ds.n, k = p.k, rows = n < CLI_EVAL_ROWS ? n : CLI_EVAL_ROWS;
    if (model_workspace_init(&w, &p, rows) != 0) {
        cli_error("out of memory for the prediction workspace (%zu samples)", rows);
        goto done;
    }
    have_w = 1;
    pred = malloc(n * sizeof *pred);
    prob = n <= SIZE_MAX / sizeof *prob / k ? malloc(n * k * sizeof *prob) : NULL;
    if (!pred || !prob) {
        cli_error("out of memory for %zu predictions of %zu classes", n, k);
        goto done;
    }
    int64_t correct = 0;
    for (size_t r0 = 0; r0 < n; r0 += w.rows) {
        const size_t m = n - r0 < w.rows ? n - r0 : w.rows;
        for (size_t r = 0; r < m; r++)
            w.idx[r] = (uint32_t)(r0 + r);
        w.ops->hidden_forward(&in, w.idx, m, p.d, p.h, p.W1, p.b1, w.A1, &w.scratch);
        if (ds.labels)
            w.ops->output_backward(w.A1, ds.labels, w.idx, m, p.h, k, p.W2, p.b2, w.W2t, 0.0f,
                                   NULL, NULL, NULL, w.loss, w.correct);
        cli_predict_block(&p, &w, ds.labels, m, pred + r0, prob + r0 * k);
        for (size_t r = 0; ds.labels && r < m; r++)
            correct += pred[r0 + r] == ds.labels[r0 + r];
    }
    const double accuracy = (double)correct / (double)n;
    if (out) {
        if (cli_predict_h5(out, pred, prob, ds.labels, n, k, accuracy) != 0)
            goto done;
        printf("predictions: %zu samples, %zu classes -> ", n, k);
        cli_put(out);
        putchar('\n');
        if (ds.labels)
            printf("accuracy:    %.4f (%" PRId64 " / %zu)\n", accuracy, correct, n);
    } else {
        printf("index,predicted");
        for (size_t j = 0; j < k; j++)
            printf(",p%zu", j);
        putchar('\n');
        for (size_t i = 0; i < n; i++) {
            printf("%zu,%d", i, (int)pred[i]);
            for (size_t j = 0; j < k; j++)
                printf(",%.9g", (double)prob[i * k + j]);
            putchar('\n');
        }
        if (ds.labels)
            fprintf(stderr, "accuracy: %.4f (%" PRId64 " / %zu)\n", accuracy, correct, n);
    }
    rc = cli_finish_stdout();
done:
    free(pred);
    free(prob);
    if (have_w)
        model_workspace_free(&w);
    if (have_p)
        model_params_free(&p);
    if (have_ds)
        data_free(&ds);
    if (have_s)
        ckpt_state_free(&s);
    return rc;
}

/* ------------------------------------------------------------------ reseal */

int cli_reseal(int argc, char **argv)
{
    const char *pos[1];
    int npos = 0;
    int rc = cli_args(argc, argv, cli_usage_reseal, 1, 1, pos, &npos);
    if (rc >= 0)
        return rc;
    char err[CKPT_ERR_MAX];
    if (ckpt_reseal(pos[0], err, sizeof err) != 0) {
        cli_error("%s", err);
        return 1;
    }
    printf("resealed ");
    cli_put(pos[0]);
    printf(": it loads as it is now\n");
    return cli_finish_stdout();
}

int cli_config(const char *path, int nsets, char *const sets[])
{
    Config cfg;
    char err[CONFIG_ERR_MAX];
    if (config_load(&cfg, path, nsets, sets, err, sizeof err) != 0) {
        cli_error("%s", err);
        return 1;
    }
    char *text = config_to_ini(&cfg);
    if (!text) {
        cli_error("out of memory");
        return 1;
    }
    fputs(text, stdout);
    free(text);
    return cli_finish_stdout() == 0 ? 0 : 1;
}

int cli_version(void)
{
    const BuildInfo *bi = buildinfo();
    char cpu[128];
    buildinfo_cpu_model(cpu, sizeof cpu);
    printf("mlp %s\n", bi->version);
    printf("  commit    %s\n", bi->commit);
    printf("  compiler  %s\n", bi->compiler);
    printf("  flags     %s\n", bi->flags);
    printf("  arch      %s\n", bi->arch);
    printf("  kernels   %s\n", bi->isa);
    printf("  this cpu  %s\n", cpu);
    return cli_finish_stdout() == 0 ? 0 : 1;
}
