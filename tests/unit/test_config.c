/* config: defaults, configs/mnist.ini, every key, every error message (exact text and
 * line), --set overrides and the config_to_ini round trip. Run from the repo root. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

#define TMP_TEMPLATE "/tmp/mlp-test-config-XXXXXX"

/* ---- helpers ---- */

static void tmp_write_bytes(char path[static sizeof TMP_TEMPLATE], const char *text, size_t n)
{
    memcpy(path, TMP_TEMPLATE, sizeof TMP_TEMPLATE);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    assert_int_equal(close(fd), 0);
}

static void tmp_write(char path[static sizeof TMP_TEMPLATE], const char *text)
{
    tmp_write_bytes(path, text, strlen(text));
}

/* Load text as a config file (plus overrides); the temporary file is removed before
 * anything is asserted so that a failure leaves nothing behind. path receives its name. */
static int load_text(const char *text, int nov, char *const ov[], Config *c, char *err,
                     char path[static sizeof TMP_TEMPLATE])
{
    tmp_write(path, text);
    int rc = config_load(c, path, nov, ov, err, CONFIG_ERR_MAX);
    unlink(path);
    return rc;
}

/* The file must be refused with exactly "PATH" + suffix. */
static void expect_error(const char *text, const char *suffix)
{
    char path[sizeof TMP_TEMPLATE];
    Config c;
    char err[CONFIG_ERR_MAX] = "";
    int rc = load_text(text, 0, NULL, &c, err, path);
    char want[CONFIG_ERR_MAX];
    snprintf(want, sizeof want, "%s%s", path, suffix);
    assert_int_equal(rc, -1);
    assert_string_equal(err, want);
}

/* The first n bytes of text (which may hold NULs) must be refused with "PATH" + suffix. */
static void expect_error_bytes(const char *text, size_t n, const char *suffix)
{
    char path[sizeof TMP_TEMPLATE];
    tmp_write_bytes(path, text, n);
    Config c;
    char err[CONFIG_ERR_MAX] = "";
    int rc = config_load(&c, path, 0, NULL, err, sizeof err);
    unlink(path);
    char want[CONFIG_ERR_MAX];
    snprintf(want, sizeof want, "%s%s", path, suffix);
    assert_int_equal(rc, -1);
    assert_string_equal(err, want);
}

/* The override must be refused with exactly want, after configs/mnist.ini loads. */
static void expect_override_error(const char *arg, const char *want)
{
    Config c;
    char err[CONFIG_ERR_MAX] = "";
    char *ov[] = {(char *)arg};
    assert_int_equal(config_load(&c, "configs/mnist.ini", 1, ov, err, sizeof err), -1);
    assert_string_equal(err, want);
}

/* Every field except source; lr bit for bit. */
static void assert_config_equal(const Config *a, const Config *b)
{
    assert_string_equal(a->data.train_images, b->data.train_images);
    assert_string_equal(a->data.train_labels, b->data.train_labels);
    assert_string_equal(a->data.test_images, b->data.test_images);
    assert_string_equal(a->data.test_labels, b->data.test_labels);
    assert_int_equal(a->data.train_limit, b->data.train_limit);
    assert_int_equal(a->model.hidden, b->model.hidden);
    assert_true(a->model.seed == b->model.seed);
    assert_string_equal(a->model.init, b->model.init);
    assert_int_equal(a->model.classes, b->model.classes);
    assert_int_equal(a->train.epochs, b->train.epochs);
    assert_int_equal(a->train.batch, b->train.batch);
    assert_memory_equal(&a->train.lr, &b->train.lr, sizeof a->train.lr);
    assert_int_equal(a->train.chunk, b->train.chunk);
    assert_int_equal(a->train.reduce, b->train.reduce);
    assert_int_equal(a->train.eval_every, b->train.eval_every);
    assert_string_equal(a->checkpoint.dir, b->checkpoint.dir);
    assert_int_equal(a->checkpoint.every, b->checkpoint.every);
    assert_int_equal(a->checkpoint.every_steps, b->checkpoint.every_steps);
    assert_int_equal(a->checkpoint.keep, b->checkpoint.keep);
    assert_string_equal(a->checkpoint.resume, b->checkpoint.resume);
    assert_int_equal(a->checkpoint.overwrite, b->checkpoint.overwrite);
    assert_string_equal(a->log.metrics, b->log.metrics);
    assert_int_equal(a->log.progress, b->log.progress);
    assert_string_equal(a->train.kernels, b->train.kernels);
    assert_int_equal(a->log.progress_seconds, b->log.progress_seconds);
}

static void put(char *dst, size_t cap, const char *s)
{
    assert_true(strlen(s) < cap);
    memset(dst, 0, cap);
    memcpy(dst, s, strlen(s));
}

/* config_to_ini(c), loaded back, must equal c. */
static void assert_round_trip(const Config *c)
{
    char *text = config_to_ini(c);
    assert_non_null(text);
    char path[sizeof TMP_TEMPLATE];
    Config back;
    char err[CONFIG_ERR_MAX] = "";
    int rc = load_text(text, 0, NULL, &back, err, path);
    if (rc != 0)
        fprintf(stderr, "round trip failed: %s\n--- text ---\n%s", err, text);
    free(text);
    assert_int_equal(rc, 0);
    assert_string_equal(back.source, path);
    assert_config_equal(&back, c);
}

/* ---- defaults and valid files ---- */

static void test_defaults(void **state)
{
    (void)state;
    Config c;
    memset(&c, 0xAB, sizeof c);
    config_defaults(&c);
    assert_string_equal(c.source, "");
    assert_string_equal(c.data.train_images, "data/mnist/train-images-idx3-ubyte");
    assert_string_equal(c.data.train_labels, "data/mnist/train-labels-idx1-ubyte");
    assert_string_equal(c.data.test_images, "data/mnist/t10k-images-idx3-ubyte");
    assert_string_equal(c.data.test_labels, "data/mnist/t10k-labels-idx1-ubyte");
    assert_int_equal(c.data.train_limit, 0);
    assert_int_equal(c.model.hidden, 128);
    assert_true(c.model.seed == 42);
    assert_string_equal(c.model.init, "xavier");
    assert_int_equal(c.model.classes, 0);
    assert_int_equal(c.train.epochs, 30);
    assert_int_equal(c.train.batch, 32);
    assert_true(c.train.lr == 0.5);
    assert_int_equal(c.train.chunk, 0);   /* auto, resolved by config_load (test_chunk_auto) */
    assert_int_equal(c.train.reduce, REDUCE_EXACT);
    assert_int_equal(c.train.eval_every, 1);
    assert_string_equal(c.checkpoint.dir, "runs/mnist");
    assert_int_equal(c.checkpoint.every, 0);
    assert_int_equal(c.checkpoint.every_steps, 0);
    assert_int_equal(c.checkpoint.keep, 3);
    assert_string_equal(c.checkpoint.resume, "none");
    assert_int_equal(c.checkpoint.overwrite, 0);
    assert_string_equal(c.log.metrics, "");  /* config_load: checkpoint.dir/metrics.csv */
    assert_int_equal(c.log.progress, PROGRESS_AUTO);
    assert_int_equal(c.log.progress_seconds, 30);
    assert_string_equal(c.train.kernels, "fast");
}

static void test_mnist_ini_is_defaults(void **state)
{
    (void)state;
    Config c, d;
    char err[CONFIG_ERR_MAX] = "";
    int rc = config_load(&c, "configs/mnist.ini", 0, NULL, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_string_equal(c.source, "configs/mnist.ini");
    /* The defaults as config_load resolves them (log.metrics from checkpoint.dir), but
     * checkpoint.resume: auto there, so that a second run continues rather than starts over. */
    assert_string_equal(c.checkpoint.resume, "auto");
    char *const auto_resume[] = {"checkpoint.resume=auto"};
    assert_int_equal(config_load(&d, NULL, 1, auto_resume, err, sizeof err), 0);
    assert_config_equal(&c, &d);
    assert_string_equal(c.log.metrics, "runs/mnist/metrics.csv");
}

/* Load text (NULL: no file) with overrides; return log.metrics. */
static const char *metrics_of(const char *text, int nov, char *const ov[])
{
    static Config c;
    char path[sizeof TMP_TEMPLATE];
    char err[CONFIG_ERR_MAX] = "";
    int rc = text ? load_text(text, nov, ov, &c, err, path)
                  : config_load(&c, NULL, nov, ov, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    return c.log.metrics;
}

/* log.metrics, unless set, is checkpoint.dir + "/metrics.csv" once every override is in:
 * moving the run directory moves the metrics with it. */
static void test_metrics_default(void **state)
{
    (void)state;
    assert_string_equal(metrics_of(NULL, 0, NULL), "runs/mnist/metrics.csv");
    char *dir[] = {"checkpoint.dir=/tmp/x"};
    assert_string_equal(metrics_of(NULL, 1, dir), "/tmp/x/metrics.csv");
    char *slash[] = {"checkpoint.dir=/tmp/x/"};
    assert_string_equal(metrics_of(NULL, 1, slash), "/tmp/x/metrics.csv");
    assert_string_equal(metrics_of("[checkpoint]\ndir = out dir\n", 0, NULL),
                        "out dir/metrics.csv");
    assert_string_equal(metrics_of("[checkpoint]\ndir = out\n", 1, dir), "/tmp/x/metrics.csv");
    /* Set explicitly, in the file or by --set, before or after the directory: kept. */
    assert_string_equal(metrics_of("[log]\nmetrics = m.csv\n", 1, dir), "m.csv");
    char *both[] = {"log.metrics=a/m.csv", "checkpoint.dir=/tmp/x"};
    assert_string_equal(metrics_of(NULL, 2, both), "a/m.csv");
    char *both2[] = {"checkpoint.dir=/tmp/x", "log.metrics=runs/mnist/metrics.csv"};
    assert_string_equal(metrics_of(NULL, 2, both2), "runs/mnist/metrics.csv");

    /* config_to_ini prints the resolved path, so the stored config names the file. */
    Config c;
    char err[CONFIG_ERR_MAX] = "";
    assert_int_equal(config_load(&c, NULL, 1, dir, err, sizeof err), 0);
    char *text = config_to_ini(&c);
    assert_non_null(text);
    assert_non_null(strstr(text, "\nmetrics = /tmp/x/metrics.csv\n"));
    free(text);
    assert_round_trip(&c);

    /* A directory too long for the default path to fit an INI line: an error naming the
     * key, not a path that config_to_ini could not write back. */
    char arg[256], value[185];
    memset(value, 'd', 184);
    value[184] = '\0';
    snprintf(arg, sizeof arg, "checkpoint.dir=%s", value);
    char *ov[] = {arg};
    assert_int_equal(config_load(&c, NULL, 1, ov, err, sizeof err), -1);
    char want[CONFIG_ERR_MAX];
    snprintf(want, sizeof want,
             "[log] metrics = '%s/metrics.csv' (the default, from [checkpoint] dir): too long "
             "(at most 184 characters); set log.metrics", value);
    assert_string_equal(err, want);
    char *ov2[] = {arg, "log.metrics=m.csv"};
    assert_int_equal(config_load(&c, NULL, 2, ov2, err, sizeof err), 0);
    assert_string_equal(c.log.metrics, "m.csv");
}

static void test_every_key(void **state)
{
    (void)state;
    const char *text =
        "; comment\n"
        "# another comment\n"
        "[data]\n"
        "train_images = /scratch/a b/imgs.idx   ; inline comment\n"
        "train_labels = lbl;v2\n"
        "test_images: ti\n"
        "test_labels=tl\n"
        "train_limit = 2147483647\n"
        "[model]\n"
        "hidden = 1048576\n"
        "seed = 18446744073709551615\n"
        "init = xavier\n"
        "classes = 256\n"
        "[train]\n"
        "epochs = 1000000\n"
        "batch = 1048576\n"
        "lr = 1e-3\n"
        "chunk = 1048576\n"
        "reduce = fast\n"
        "kernels = reference\n"
        "eval_every = 1000000\n"
        "[checkpoint]\n"
        "dir = out dir\n"
        "every = 1000000\n"
        "every_steps = 2147483647\n"
        "keep = 1000000\n"
        "resume = auto\n"
        "overwrite = true\n"
        "[log]\n"
        "metrics = m.csv\n"
        "progress = off\n"
        "progress_seconds = 86400\n";
    char path[sizeof TMP_TEMPLATE];
    Config c;
    char err[CONFIG_ERR_MAX] = "";
    int rc = load_text(text, 0, NULL, &c, err, path);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_string_equal(c.source, path);
    assert_string_equal(c.data.train_images, "/scratch/a b/imgs.idx");
    assert_string_equal(c.data.train_labels, "lbl;v2");
    assert_string_equal(c.data.test_images, "ti");
    assert_string_equal(c.data.test_labels, "tl");
    assert_int_equal(c.data.train_limit, 2147483647L);
    assert_int_equal(c.model.hidden, 1048576);
    assert_true(c.model.seed == UINT64_MAX);
    assert_string_equal(c.model.init, "xavier");
    assert_int_equal(c.model.classes, 256);
    assert_int_equal(c.train.epochs, 1000000);
    assert_int_equal(c.train.batch, 1048576);
    assert_true(c.train.lr == 1e-3);
    assert_int_equal(c.train.chunk, 1048576);
    assert_int_equal(c.train.reduce, REDUCE_FAST);
    assert_string_equal(c.train.kernels, "reference");
    assert_int_equal(c.train.eval_every, 1000000);
    assert_string_equal(c.checkpoint.dir, "out dir");
    assert_int_equal(c.checkpoint.every, 1000000);
    assert_int_equal(c.checkpoint.every_steps, 2147483647L);
    assert_int_equal(c.checkpoint.keep, 1000000);
    assert_string_equal(c.checkpoint.resume, "auto");
    assert_int_equal(c.checkpoint.overwrite, 1);
    assert_string_equal(c.log.metrics, "m.csv");
    assert_int_equal(c.log.progress, PROGRESS_OFF);
    assert_int_equal(c.log.progress_seconds, 86400);
}

/* The low ends of the ranges, the other enum values, a resume path, and layout that
 * inih would misread: indented lines (a "continuation" to inih), CRLF, empty sections. */
static void test_low_bounds_and_layout(void **state)
{
    (void)state;
    const char *text =
        "[empty]\r\n"
        "[model]\r\n"
        "  hidden = 1\r\n"
        "  seed = 0\r\n"
        "  classes = 2\r\n"
        "[train]\r\n"
        "epochs = 1\r\n"
        "    batch = 1\r\n"
        "\tchunk = 1\r\n"
        "lr = 1e6\r\n"
        "reduce = exact\r\n"
        "eval_every = 0\r\n"
        "  [checkpoint]\r\n"
        "keep = 0\r\n"
        "resume = runs/old/epoch-0003.h5\r\n"
        "overwrite = false\r\n"
        "[log]\r\n"
        "progress = on\r\n"
        "[data]\r\n"
        "train_limit = 0\r\n";
    char path[sizeof TMP_TEMPLATE];
    Config c;
    char err[CONFIG_ERR_MAX] = "";
    int rc = load_text(text, 0, NULL, &c, err, path);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(c.model.hidden, 1);
    assert_true(c.model.seed == 0);
    assert_int_equal(c.model.classes, 2);
    assert_int_equal(c.train.epochs, 1);
    assert_int_equal(c.train.batch, 1);
    assert_int_equal(c.train.chunk, 1);
    assert_true(c.train.lr == 1e6);
    assert_int_equal(c.train.reduce, REDUCE_EXACT);
    assert_int_equal(c.train.eval_every, 0);
    assert_int_equal(c.checkpoint.keep, 0);
    assert_string_equal(c.checkpoint.resume, "runs/old/epoch-0003.h5");
    assert_int_equal(c.checkpoint.overwrite, 0);
    assert_int_equal(c.log.progress, PROGRESS_ON);
    assert_int_equal(c.data.train_limit, 0);
}

/* ---- errors: each names file:line, section, key and value ---- */

/* The smallest learning rate accepted is the smallest normal float, as the error message
 * spells it (9 digits, which read back as exactly FLT_MIN in float). */
static void test_lr_low_bound(void **state)
{
    (void)state;
    char path[sizeof TMP_TEMPLATE];
    Config c;
    char err[CONFIG_ERR_MAX] = "";
    int rc = load_text("[train]\nlr = 1.17549435e-38\n", 0, NULL, &c, err, path);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_true((float)c.train.lr == FLT_MIN);
    assert_round_trip(&c);
}

static void test_error_unknown_section(void **state)
{
    (void)state;
    expect_error("[data]\ntrain_limit = 5\n\n[bogus]\n; nothing yet\nx = 1\n",
                 ":6: unknown section [bogus]");
    expect_error("[Train]\nepochs = 3\n", ":2: unknown section [Train]");
    expect_error("\nepochs = 3\n", ":2: key 'epochs' is outside any [section]");
}

static void test_error_unknown_key(void **state)
{
    (void)state;
    expect_error("[train]\nepochs = 3\n\nfoo = 1\n", ":4: unknown key 'foo' in [train]");
    expect_error("[model]\nlr = 0.1\n", ":2: unknown key 'lr' in [model]");
}

typedef struct {
    const char *section, *key, *value, *reason;
} BadValue;

/* Each value on line 3 of its own file; the message must quote it and give reason. */
static void expect_bad_values(const BadValue *bad, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char text[512], suffix[512];
        snprintf(text, sizeof text, "[%s]\n; the value below\n%s = %s\n", bad[i].section,
                 bad[i].key, bad[i].value);
        snprintf(suffix, sizeof suffix, ":3: [%s] %s = '%s': %s", bad[i].section,
                 bad[i].key, bad[i].value, bad[i].reason);
        expect_error(text, suffix);
    }
}

static void test_error_malformed_number(void **state)
{
    (void)state;
    static const BadValue bad[] = {
        {"train", "lr", "abc", "not a number"},
        {"train", "lr", ".", "not a number"},
        {"train", "lr", "", "not a number"},
        {"train", "epochs", "abc", "not an integer"},
        {"train", "epochs", "", "not an integer"},
        {"model", "seed", "x", "not an integer"},
        {"model", "hidden", "- 5", "not an integer"},
        {"model", "classes", "ten", "not an integer"},
        {"model", "classes", "", "not an integer"},
    };
    expect_bad_values(bad, sizeof bad / sizeof bad[0]);
}

static void test_error_trailing_junk(void **state)
{
    (void)state;
    static const BadValue bad[] = {
        {"train", "epochs", "12abc", "unexpected 'abc' after the number"},
        {"train", "batch", "1.5", "unexpected '.5' after the number"},
        {"model", "hidden", "0x10", "unexpected 'x10' after the number"},
        {"train", "lr", "0.5x", "unexpected 'x' after the number"},
        {"train", "lr", "1e", "unexpected 'e' after the number"},
        {"model", "seed", "42 7", "unexpected ' 7' after the number"},
        {"model", "classes", "10x", "unexpected 'x' after the number"},
    };
    expect_bad_values(bad, sizeof bad / sizeof bad[0]);
}

static void test_error_out_of_range(void **state)
{
    (void)state;
#define R31 "out of range (0..2147483647)"
#define R1M "out of range (0..1000000)"
#define CLS "out of range (0 = from the training labels, or 2..256)"
#define LR "out of range (1.17549435e-38..1e6: at least the smallest normal float, FLT_MIN)"
    static const BadValue bad[] = {
        {"data", "train_limit", "-1", R31},
        {"data", "train_limit", "2147483648", R31},
        {"model", "hidden", "0", "out of range (1..1048576)"},
        {"model", "hidden", "1048577", "out of range (1..1048576)"},
        /* K = 1 is no classifier; 256 is what the kernels take (KERNELS_MAX_CLASSES). */
        {"model", "classes", "1", CLS},
        {"model", "classes", "-1", CLS},
        {"model", "classes", "257", CLS},
        {"model", "classes", "99999999999999999999", CLS},
        {"model", "classes", "-99999999999999999999", CLS},
        {"model", "seed", "-5", "out of range (0..18446744073709551615)"},
        {"model", "seed", "-0", "out of range (0..18446744073709551615)"},
        {"model", "seed", "18446744073709551616", "out of range (0..18446744073709551615)"},
        {"train", "epochs", "0", "out of range (1..1000000)"},
        {"train", "epochs", "1000001", "out of range (1..1000000)"},
        {"train", "epochs", "99999999999999999999", "out of range (1..1000000)"},
        {"train", "batch", "0", "out of range (1..1048576)"},
        {"train", "batch", "1048577", "out of range (1..1048576)"},
        {"train", "chunk", "0", "must be auto or an integer in 1..1048576"},
        {"train", "chunk", "1048577", "must be auto or an integer in 1..1048576"},
        {"train", "chunk", "Auto", "must be auto or an integer in 1..1048576"},
        {"train", "eval_every", "-1", R1M},
        {"train", "eval_every", "1000001", R1M},
        {"train", "lr", "0", LR},
        {"train", "lr", "-0.1", LR},
        {"train", "lr", "1000000.5", LR},
        {"train", "lr", "1e400", LR},
        /* Positive as a double but 0 or subnormal as the float the trainer uses. */
        {"train", "lr", "1e-50", LR},
        {"train", "lr", "1e-40", LR},
        {"train", "lr", "1e-38", LR},
        {"train", "lr", "1.1754942e-38", LR},   /* the largest subnormal float */
        {"train", "lr", "1e-400", LR},
        {"train", "lr", "nan", "not a finite number"},
        {"train", "lr", "inf", "not a finite number"},
        {"train", "lr", "-Infinity", "not a finite number"},
        {"log", "progress_seconds", "-1", "out of range (0..86400)"},
        {"log", "progress_seconds", "86401", "out of range (0..86400)"},
        {"checkpoint", "every", "-1", R1M},
        {"checkpoint", "every", "1000001", R1M},
        {"checkpoint", "every_steps", "-1", R31},
        {"checkpoint", "every_steps", "2147483648", R31},
        {"checkpoint", "keep", "-1", R1M},
        {"checkpoint", "keep", "1000001", R1M},
    };
#undef R31
#undef R1M
#undef CLS
#undef LR
    expect_bad_values(bad, sizeof bad / sizeof bad[0]);
}

static void test_error_bad_enum(void **state)
{
    (void)state;
    static const BadValue bad[] = {
        {"train", "reduce", "slow", "must be exact or fast"},
        {"train", "kernels", "naive", "must be fast or reference"},
        {"train", "kernels", "Fast", "must be fast or reference"},
        {"train", "reduce", "Exact", "must be exact or fast"},
        {"log", "progress", "yes", "must be auto, on or off"},
        {"model", "init", "he", "must be xavier"},
        {"checkpoint", "overwrite", "yes", "must be true or false"},
        {"checkpoint", "overwrite", "1", "must be true or false"},
        {"checkpoint", "overwrite", "True", "must be true or false"},
        {"checkpoint", "overwrite", "", "must be true or false"},
    };
    expect_bad_values(bad, sizeof bad / sizeof bad[0]);
}

static void test_error_empty_path(void **state)
{
    (void)state;
    static const BadValue bad[] = {
        {"checkpoint", "dir", "", "must not be empty"},
        {"data", "train_images", "", "must not be empty"},
        {"data", "test_labels", "", "must not be empty"},
        {"log", "metrics", "", "must not be empty"},
        {"checkpoint", "resume", "", "must be auto, none or a path"},
    };
    expect_bad_values(bad, sizeof bad / sizeof bad[0]);
}

static void test_error_duplicate_key(void **state)
{
    (void)state;
    expect_error("[train]\nlr = 0.1\n[model]\nhidden = 3\n[train]\nlr = 0.2\n",
                 ":6: [train] lr = '0.2': already set on line 2");
    expect_error("[log]\nprogress = on\nprogress = on\n",
                 ":3: [log] progress = 'on': already set on line 2");
}

static void test_error_long_line(void **state)
{
    (void)state;
    /* 199 characters is the most a line may hold: a comment and a value of that length
     * load (also with CRLF), one more character is refused, naming the line. */
    char path184[185], text[1024];
    memset(path184, 'p', 184);
    path184[184] = '\0';
    char comment199[200];
    memset(comment199, 'c', 199);
    comment199[0] = ';';
    comment199[199] = '\0';
    snprintf(text, sizeof text, "%s\r\n[data]\ntrain_images = %s\n", comment199, path184);
    assert_int_equal(strlen("train_images = ") + strlen(path184), 199);

    char path[sizeof TMP_TEMPLATE];
    Config c;
    char err[CONFIG_ERR_MAX] = "";
    int rc = load_text(text, 0, NULL, &c, err, path);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_string_equal(c.data.train_images, path184);

    snprintf(text, sizeof text, "[data]\n; next line\ntrain_images = %sX\n", path184);
    expect_error(text, ":3: line too long (more than 199 characters)");
    snprintf(text, sizeof text, "[data]\n%sc\n", comment199);
    expect_error(text, ":2: line too long (more than 199 characters)");

    /* A much longer line is refused too, not read as several lines. */
    char huge[700];
    memset(huge, 'x', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    memcpy(huge, "dir = ", 6);
    snprintf(text, sizeof text, "[checkpoint]\n%s\n", huge);
    expect_error(text, ":2: line too long (more than 199 characters)");

    /* An earlier error still wins. */
    snprintf(text, sizeof text, "[train]\nepochs = 0\n%s\n", huge);
    expect_error(text, ":2: [train] epochs = '0': out of range (1..1000000)");
}

static void test_error_missing_file(void **state)
{
    (void)state;
    Config c;
    char err[CONFIG_ERR_MAX] = "";
    assert_int_equal(config_load(&c, "/tmp/mlp-test-config-absent/x.ini", 0, NULL, err,
                                 sizeof err), -1);
    assert_string_equal(err,
                        "/tmp/mlp-test-config-absent/x.ini: cannot open config: "
                        "No such file or directory");
    assert_int_equal(config_load(&c, "/tmp", 0, NULL, err, sizeof err), -1);
    assert_string_equal(err, "/tmp: cannot read config: a directory, not a regular file");

    char longpath[CONFIG_PATH_MAX + 10];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[sizeof longpath - 1] = '\0';
    assert_int_equal(config_load(&c, longpath, 0, NULL, err, sizeof err), -1);
    const char *tail = ": config path too long (at most 1023 characters)";
    assert_true(strlen(err) > strlen(tail));
    assert_string_equal(err + strlen(err) - strlen(tail), tail);
}

/* A FIFO (which would block the open, or the first read, until a writer came) or a
 * device is refused at once, without reading from it. */
static void test_error_not_regular(void **state)
{
    (void)state;
    char dir[] = "/tmp/mlp-test-config-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char fifo[sizeof dir + 8];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    Config c;
    char err[CONFIG_ERR_MAX] = "";
    int rc = config_load(&c, fifo, 0, NULL, err, sizeof err);
    unlink(fifo);
    rmdir(dir);
    assert_int_equal(rc, -1);
    char want[CONFIG_ERR_MAX];
    snprintf(want, sizeof want, "%s: cannot read config: a FIFO, not a regular file", fifo);
    assert_string_equal(err, want);

    assert_int_equal(config_load(&c, "/dev/null", 0, NULL, err, sizeof err), -1);
    assert_string_equal(err, "/dev/null: cannot read config: a character device, not a regular file");
    /* A symbolic link to a regular file is a regular file. */
    char link[sizeof TMP_TEMPLATE + 8], path[sizeof TMP_TEMPLATE];
    tmp_write(path, "[train]\nepochs = 5\n");
    snprintf(link, sizeof link, "%s.link", path);
    assert_int_equal(symlink(path, link), 0);
    rc = config_load(&c, link, 0, NULL, err, sizeof err);
    unlink(link);
    unlink(path);
    assert_int_equal(rc, 0);
    assert_int_equal(c.train.epochs, 5);
}

static void test_error_syntax(void **state)
{
    (void)state;
    const char *s = ": syntax error (expected [section] or key = value)";
    char want[128];
    snprintf(want, sizeof want, ":3%s", s);
    expect_error("[train]\nepochs = 3\nthis is not ini\n", want);
    /* An indented line is not a continuation of the previous value. */
    expect_error("[train]\nepochs = 3\n    4\n", want);
    snprintf(want, sizeof want, ":1%s", s);
    expect_error("[train\nepochs = 3\n", want);
    /* The first error in the file is the one reported. */
    snprintf(want, sizeof want, ":2%s", s);
    expect_error("[train]\nbroken\nepochs = 0\n", want);
    expect_error("[train]\nepochs = 0\nbroken\n",
                 ":2: [train] epochs = '0': out of range (1..1000000)");
}

/* A config is text: a NUL (which a C-string reader takes for the end of the line, so
 * that "hidden = 16<NUL>garbage" read as 16 and a NUL hid a long line), any other control
 * character but tab, and DEL are refused wherever they are, naming line and column. CR
 * is fine just before the newline or the end of the file. */
static void test_error_control_chars(void **state)
{
    (void)state;
#define BYTES(lit) lit, sizeof lit - 1
    expect_error_bytes(BYTES("[model]\nhidden = 16\0garbage\n"),
                       ":2: control character 0x00 at column 12");
    expect_error_bytes(BYTES("[model]\nhidden = 16\0\n"), ":2: control character 0x00 at column 12");
    expect_error_bytes(BYTES("\0"), ":1: control character 0x00 at column 1");
    /* A NUL early in a line of 300 characters: seen, and the line is not cut into two. */
    char text[512] = "[checkpoint]\ndir = x\0";
    size_t n = strlen(text) + 1;
    memset(text + n, 'y', 300);
    n += 300;
    text[n++] = '\n';
    expect_error_bytes(text, n, ":2: control character 0x00 at column 8");
    /* In a comment, a section line, before the newline, as a line of its own. */
    expect_error_bytes(BYTES("; a comment \x01\n[train]\n"), ":1: control character 0x01 at column 13");
    expect_error_bytes(BYTES("[train\x1b]\n"), ":1: control character 0x1B at column 7");
    expect_error_bytes(BYTES("[train]\nepochs = 3\v\n"), ":2: control character 0x0B at column 11");
    expect_error_bytes(BYTES("[train]\nepochs = 3\n\f\n"), ":3: control character 0x0C at column 1");
    expect_error_bytes(BYTES("[log]\nmetrics = m\x7f.csv\n"), ":2: control character 0x7F at column 12");
    /* CR anywhere but at the end of a line. */
    expect_error_bytes(BYTES("[train]\nepochs = 3\r4\n"), ":2: control character 0x0D at column 11");
    expect_error_bytes(BYTES("[train]\r\r\nepochs = 3\n"), ":1: control character 0x0D at column 8");
    /* An earlier error still wins. */
    expect_error_bytes(BYTES("[train]\nepochs = 0\nx\0\n"),
                       ":2: [train] epochs = '0': out of range (1..1000000)");
#undef BYTES

    /* Tab, CRLF and a CR that ends the file are fine; bytes >= 0x80 (UTF-8) too. */
    char path[sizeof TMP_TEMPLATE];
    Config c;
    char err[CONFIG_ERR_MAX] = "";
    int rc = load_text("[train]\t; tab\r\n\tepochs\t=\t3\t\r\n[log]\r\n"
                       "metrics = r\xc3\xa9sultats.csv\r", 0, NULL, &c, err, path);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(c.train.epochs, 3);
    assert_string_equal(c.log.metrics, "r\xc3\xa9sultats.csv");

    /* The same in --set arguments (which cannot hold a NUL), named by the argument; the
     * message shows each control character as '?'. A trailing newline or CR used to be
     * dropped as a blank. */
    expect_override_error("train.epochs=3\n",
                          "--set train.epochs=3?: control character 0x0A at column 15");
    expect_override_error("train.reduce=fast\r",
                          "--set train.reduce=fast?: control character 0x0D at column 18");
    expect_override_error("train\x01.epochs=3",
                          "--set train?.epochs=3: control character 0x01 at column 6");
    expect_override_error("\vtrain.epochs=3",
                          "--set ?train.epochs=3: control character 0x0B at column 1");
    expect_override_error("log.metrics=a\x7f", "--set log.metrics=a?: control character 0x7F at column 14");
    char *tab[] = {"\ttrain.epochs\t=\t4\t"};
    assert_int_equal(config_load(&c, "configs/mnist.ini", 1, tab, err, sizeof err), 0);
    assert_int_equal(c.train.epochs, 4);
}

/* ---- overrides ---- */

static void test_overrides(void **state)
{
    (void)state;
    char *ov[] = {"train.lr=0.25", " train.epochs = 7 ", "data.train_images=/x/y=z.idx",
                  "model.seed=7", "model.seed=8", "log.progress=on", "model.classes=10",
                  "checkpoint.overwrite=true"};
    char path[sizeof TMP_TEMPLATE];
    Config c;
    char err[CONFIG_ERR_MAX] = "";
    int rc = load_text("[train]\nlr = 0.1\nepochs = 3\nbatch = 32\n", 8, ov, &c, err, path);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_true(c.train.lr == 0.25);
    assert_int_equal(c.train.epochs, 7);
    assert_int_equal(c.train.batch, 32);  /* from the file, not overridden */
    assert_string_equal(c.data.train_images, "/x/y=z.idx");
    assert_true(c.model.seed == 8);       /* the last override wins */
    assert_int_equal(c.log.progress, PROGRESS_ON);
    assert_int_equal(c.model.classes, 10);
    assert_int_equal(c.checkpoint.overwrite, 1);

    /* No file: defaults plus overrides. */
    char *one[] = {"train.epochs=2"};
    assert_int_equal(config_load(&c, NULL, 1, one, err, sizeof err), 0);
    assert_string_equal(c.source, "");
    assert_int_equal(c.train.epochs, 2);
    assert_int_equal(c.train.batch, 32);
}

/* train.chunk = auto (the default): ceil(batch / 8), resolved by config_load and printed
 * as the number; an explicit chunk stays as given. */
static void test_chunk_auto(void **state)
{
    (void)state;
    const struct {
        const char *batch, *chunk;
        long want;
    } cases[] = {{"32", NULL, 4},   {"256", NULL, 32}, {"1", NULL, 1},  {"33", NULL, 5},
                 {"7", "auto", 1},  {"64", "auto", 8}, {"256", "16", 16}, {"3", "5", 5}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char b[64], ch[64];
        snprintf(b, sizeof b, "train.batch=%s", cases[i].batch);
        snprintf(ch, sizeof ch, "train.chunk=%s", cases[i].chunk ? cases[i].chunk : "auto");
        char *ov[] = {b, ch};
        Config c;
        char err[CONFIG_ERR_MAX] = "";
        assert_int_equal(config_load(&c, NULL, cases[i].chunk ? 2 : 1, ov, err, sizeof err), 0);
        if (c.train.chunk != cases[i].want)
            fail_msg("batch %s chunk %s: %ld, want %ld", cases[i].batch,
                     cases[i].chunk ? cases[i].chunk : "(default)", c.train.chunk,
                     cases[i].want);
        char *ini = config_to_ini(&c);
        char line[64];
        snprintf(line, sizeof line, "\nchunk = %ld\n", cases[i].want);
        assert_non_null(ini);
        assert_non_null(strstr(ini, line));
        free(ini);
    }
}

static void test_override_errors(void **state)
{
    (void)state;
    expect_override_error("train.lr=abc", "--set train.lr=abc: [train] lr = 'abc': not a number");
    expect_override_error("train.epochs=0",
                          "--set train.epochs=0: [train] epochs = '0': out of range (1..1000000)");
    expect_override_error("foo", "--set foo: expected section.key=value");
    expect_override_error("train.lr", "--set train.lr: expected section.key=value");
    expect_override_error("lr=0.1", "--set lr=0.1: expected section.key=value");
    expect_override_error("a=b.c", "--set a=b.c: expected section.key=value");
    expect_override_error(".lr=1", "--set .lr=1: expected section.key=value");
    expect_override_error("train.=1", "--set train.=1: expected section.key=value");
    expect_override_error("train.foo=1", "--set train.foo=1: unknown key 'foo' in [train]");
    expect_override_error("bogus.x=1", "--set bogus.x=1: unknown section [bogus]");
    expect_override_error("log.metrics=a ;b",
                          "--set log.metrics=a ;b: [log] metrics = 'a ;b': contains ' ;', "
                          "which INI reads as the start of a comment");
    /* A newline would split the one-line message: it is shown as '?'. */
    expect_override_error("log.metrics=a\nb",
                          "--set log.metrics=a?b: control character 0x0A at column 14");

    /* Paths are held to what fits on an INI line (184 characters). */
    char arg[256], want[CONFIG_ERR_MAX];
    char value[186];
    memset(value, 'v', 185);
    value[185] = '\0';
    snprintf(arg, sizeof arg, "checkpoint.dir=%s", value);
    snprintf(want, sizeof want,
             "--set %s: [checkpoint] dir = '%s': too long (at most 184 characters)", arg, value);
    expect_override_error(arg, want);

    value[184] = '\0';
    snprintf(arg, sizeof arg, "checkpoint.dir=%s", value);
    Config c;
    char err[CONFIG_ERR_MAX] = "";
    /* (log.metrics set: the default, DIR/metrics.csv, would not fit) */
    char *ov[] = {arg, "log.metrics=m.csv"};
    assert_int_equal(config_load(&c, "configs/mnist.ini", 2, ov, err, sizeof err), 0);
    assert_string_equal(c.checkpoint.dir, value);

    /* Longer than any buffer: refused, never truncated to fit. */
    char huge[2100];
    memset(huge, 'w', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    memcpy(huge, "checkpoint.dir=", 15);
    ov[0] = huge;
    assert_int_equal(config_load(&c, "configs/mnist.ini", 1, ov, err, sizeof err), -1);
    const char *tail = ": [checkpoint] dir: value too long";
    assert_true(strncmp(err, "--set checkpoint.dir=www", 24) == 0);
    assert_true(strlen(err) > strlen(tail));
    assert_string_equal(err + strlen(err) - strlen(tail), tail);
}

/* ---- config_to_ini ---- */

static void test_to_ini_layout(void **state)
{
    (void)state;
    Config d;
    config_defaults(&d);
    char *text = config_to_ini(&d);
    assert_non_null(text);
    const char *prefix = "; resolved configuration of mlp\n";
    assert_true(strncmp(text, prefix, strlen(prefix)) == 0);
    /* Every section and key, in docs/design.md section 6 order. */
    static const char *const order[] = {
        "\n[data]\n", "\ntrain_images = data/mnist/train-images-idx3-ubyte\n",
        "\ntrain_labels = ", "\ntest_images = ", "\ntest_labels = ", "\ntrain_limit = 0\n",
        "\n[model]\n", "\nhidden = 128\n", "\nseed = 42\n", "\ninit = xavier\n",
        "\nclasses = 0\n", "\n[train]\n", "\nepochs = 30\n", "\nbatch = 32\n", "\nlr = 0.5\n", "\nchunk = auto\n",
        "\nreduce = exact\n", "\nkernels = fast\n", "\neval_every = 1\n",
        "\n[checkpoint]\n", "\ndir = runs/mnist\n", "\nevery = 0\n", "\nevery_steps = 0\n",
        "\nkeep = 3\n", "\nresume = none\n", "\noverwrite = false\n",
        "\n[log]\n", "\nmetrics = runs/mnist/metrics.csv\n", "\nprogress = auto\n",
        "\nprogress_seconds = 30\n",
    };
    const char *at = text;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *hit = strstr(at, order[i]);
        if (!hit)
            fprintf(stderr, "missing or out of order: %s\n--- text ---\n%s", order[i], text);
        assert_non_null(hit);
        at = hit + 1;
    }
    free(text);
    char err[CONFIG_ERR_MAX] = "";
    assert_int_equal(config_load(&d, NULL, 0, NULL, err, sizeof err), 0);
    assert_round_trip(&d);
}

static void test_to_ini_round_trip(void **state)
{
    (void)state;
    Config c;
    config_defaults(&c);
    char p184[185];
    memset(p184, 'q', 184);
    p184[184] = '\0';
    put(c.data.train_images, sizeof c.data.train_images, p184);  /* the longest line */
    put(c.data.train_labels, sizeof c.data.train_labels, "/scratch/a b/train;v2=final:#1");
    put(c.data.test_images, sizeof c.data.test_images, "#t10k");
    put(c.data.test_labels, sizeof c.data.test_labels, "[t10k]");
    c.data.train_limit = 12345;
    c.model.hidden = 1048576;
    c.model.seed = UINT64_MAX;
    c.model.classes = 256;
    c.train.epochs = 7;
    c.train.batch = 1000;
    c.train.lr = 0.1;
    c.train.chunk = 3;
    c.train.reduce = REDUCE_FAST;
    c.train.eval_every = 0;
    put(c.checkpoint.dir, sizeof c.checkpoint.dir, "ckpt dir");
    c.checkpoint.every = 2;
    c.checkpoint.every_steps = 2147483647L;
    c.checkpoint.keep = 0;
    put(c.checkpoint.resume, sizeof c.checkpoint.resume, "auto");
    c.checkpoint.overwrite = 1;
    put(c.log.metrics, sizeof c.log.metrics, "m.csv");
    c.log.progress = PROGRESS_OFF;
    assert_round_trip(&c);

    c.log.progress = PROGRESS_ON;
    c.model.classes = 2;
    c.checkpoint.overwrite = 0;
    put(c.checkpoint.resume, sizeof c.checkpoint.resume, "runs/x/epoch-0002.h5");
    /* Learning rates whose shortest decimal needs 15, 16 or 17 digits. */
    const double lrs[] = {0.1, 1.0 / 3.0, nextafter(0.5, 1.0), 0.30000000000000004,
                          FLT_MIN, 1e6, 123456.789, 5e-7};
    for (size_t i = 0; i < sizeof lrs / sizeof lrs[0]; i++) {
        c.train.lr = lrs[i];
        assert_round_trip(&c);
    }
}

static void test_reduce_name(void **state)
{
    (void)state;
    assert_string_equal(config_reduce_name(REDUCE_EXACT), "exact");
    assert_string_equal(config_reduce_name(REDUCE_FAST), "fast");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_mnist_ini_is_defaults),
        cmocka_unit_test(test_metrics_default),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_low_bounds_and_layout),
        cmocka_unit_test(test_lr_low_bound),
        cmocka_unit_test(test_error_unknown_section),
        cmocka_unit_test(test_error_unknown_key),
        cmocka_unit_test(test_error_malformed_number),
        cmocka_unit_test(test_error_trailing_junk),
        cmocka_unit_test(test_error_out_of_range),
        cmocka_unit_test(test_error_bad_enum),
        cmocka_unit_test(test_error_empty_path),
        cmocka_unit_test(test_error_duplicate_key),
        cmocka_unit_test(test_error_long_line),
        cmocka_unit_test(test_error_missing_file),
        cmocka_unit_test(test_error_not_regular),
        cmocka_unit_test(test_error_syntax),
        cmocka_unit_test(test_error_control_chars),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_chunk_auto),
        cmocka_unit_test(test_override_errors),
        cmocka_unit_test(test_to_ini_layout),
        cmocka_unit_test(test_to_ini_round_trip),
        cmocka_unit_test(test_reduce_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
