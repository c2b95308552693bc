/* main: the command line (docs/design.md, "Command line"). Dispatch only. */
#include "cli.h"
#include "config.h"
#include "dist.h"
#include "train.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mlp CONFIG.ini [--set section.key=value]...   train\n"
            "       mlp inspect CHECKPOINT.h5                      summary of a checkpoint\n"
            "       mlp eval CHECKPOINT.h5 [CONFIG.ini]            test-set evaluation\n"
            "       mlp predict CHECKPOINT.h5 INPUT [--out F.h5]   predictions (CSV or HDF5)\n"
            "       mlp reseal CHECKPOINT.h5                       re-seal after a deliberate edit\n"
            "       mlp config CONFIG.ini [--set section.key=value]...  the resolved config\n"
            "       mlp --help | --version\n"
            "Trains a two-layer perceptron data-parallel over MPI ranks; see README.md.\n"
            "inspect prints shapes, attributes, history and weight statistics; eval prints the\n"
            "test loss, accuracy and confusion matrix, reading the test set named in CONFIG.ini\n"
            "or else in the config stored in the checkpoint. Both run without mpirun; see\n"
            "docs/checkpoints.md.\n");
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "--version"))
        return cli_version();
    /* The checkpoint commands run as one plain process: dispatched before dist_init, so
     * they need no mpirun. */
    if (argc >= 2 && !strcmp(argv[1], "inspect"))
        return cli_inspect(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "eval"))
        return cli_eval(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "predict"))
        return cli_predict(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "reseal"))
        return cli_reseal(argc - 1, argv + 1);
    const int config_only = argc >= 2 && !strcmp(argv[1], "config");
    /* mlp [config] CONFIG [--set k=v]...: the overrides are collected in order. */
    const char *path = NULL;
    char *sets[argc > 0 ? argc : 1];
    int nsets = 0;
    for (int i = 1 + config_only; i < argc; i++) {
        if (!strcmp(argv[i], "--set") && i + 1 < argc)
            sets[nsets++] = argv[++i];
        else if (!strncmp(argv[i], "--set=", 6))
            sets[nsets++] = argv[i] + 6;
        else if (argv[i][0] != '-' && !path)
            path = argv[i];
        else {
            fprintf(stderr, "mlp: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    if (config_only)
        return cli_config(path, nsets, sets);

    Dist dist;
    dist_init(&dist, &argc, &argv);
    Config cfg;
    char err[CONFIG_ERR_MAX];
    int ok = config_load(&cfg, path, nsets, sets, err, sizeof err) == 0;
    int first = dist_first_failure(ok);
    int status = 1;
    if (first < 0)
        status = train_run(&cfg, &dist);
    else if (first == dist.rank)
        fprintf(stderr, "mlp: [rank %d] error: %s\n", dist.rank, err);
    dist_finalize(&dist);
    return status;
}
