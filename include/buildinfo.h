/* buildinfo: which binary this is and where it runs, for `mlp --version`, the banner and
 * every checkpoint. Bitwise reproducibility holds for the same binary on the same CPU type:
 * these strings let a user (and a resumed run) see whether that is the case.
 *
 * Owns nothing: static strings, fixed when the binary was built (the Makefile writes them
 * into build-info.h, rebuilt only when one changes), and the CPU model read at run time.
 */
#ifndef MLP_BUILDINFO_H
#define MLP_BUILDINFO_H

#include <stddef.h>

typedef struct {
    const char *version;    /* mlp's version, e.g. "0.2.0" */
    const char *commit;     /* git describe --always --dirty, or "unknown" outside git */
    const char *compiler;   /* the compiler's first --version line */
    const char *flags;      /* optimisation, target and sanitizer flags */
    const char *arch;       /* the ARCH the build targets: "native", "x86-64", ... */
    const char *isa;        /* the vector ISA the kernels were compiled for */
} BuildInfo;

const BuildInfo *buildinfo(void);

/* The CPU's model name (/proc/cpuinfo "model name"), or "unknown". */
void buildinfo_cpu_model(char *buf, size_t len);

#endif
