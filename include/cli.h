/* cli: the checkpoint subcommands of the command line (see README.md).
 *
 *   mlp inspect CHECKPOINT.h5            shapes, root attributes, history, weight statistics
 *   mlp eval CHECKPOINT.h5 [CONFIG.ini]  test loss, accuracy and confusion matrix
 *   mlp predict CHECKPOINT.h5 INPUT      per-sample class and probabilities (CSV or HDF5)
 *   mlp reseal CHECKPOINT.h5             after a deliberate edit (h5py): validate as a load
 *                                        would, then rewrite the sealed header
 *   mlp config CONFIG.ini [--set k=v]... the resolved configuration, as a run would save it
 *   mlp --version                        version, commit, compiler, flags, ARCH, kernel ISA
 *
 * All run as one plain process: no MPI (main dispatches to them before dist_init, so
 * they work without mpirun). Normal output goes to stdout; an error is ONE line
 * `mlp: error: MESSAGE` on stderr. Text from a file (paths, attributes, config lines) is
 * printed with control characters escaped (ckpt_escape). Each returns the process exit
 * status: 0 success, 1 user error (missing or corrupt checkpoint, unreadable data,
 * mismatched shapes; eval: non-finite weights, after one line `mlp: warning: ...`),
 * 2 usage error. argv[0] is the subcommand's name, argv[1..argc) its arguments.
 */
#ifndef MLP_CLI_H
#define MLP_CLI_H

int cli_inspect(int argc, char **argv);
int cli_eval(int argc, char **argv);
/* mlp predict CHECKPOINT.h5 INPUT [--out FILE.h5] [--features NAME] [--labels NAME]:
 * class and probabilities per sample (CSV on stdout, or HDF5), the accuracy when INPUT has
 * labels; the predicted classes are eval's, bit for bit. */
int cli_predict(int argc, char **argv);
int cli_reseal(int argc, char **argv);
/* path and the --set overrides as main collected them. */
int cli_config(const char *path, int nsets, char *const sets[]);
int cli_version(void);

#endif
