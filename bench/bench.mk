# make bench: mlp's training throughput against OpenBLAS cblas_sgemm at the same shapes and
# thread counts, the ranks x threads table, the gradient allreduce and peak RSS per rank;
# rewrites the generated part of docs/performance.md (see bench/run). About 5 minutes on
# 2 cores. OpenBLAS (libopenblas-dev) is linked into build/bench/sgemm_bound only: mlp never
# links it, and the default `make deps` does not install it.

BENCH_DIR  := build/bench
BENCH_CC   ?= cc
# Deferred (=): evaluated when the rule runs, i.e. after bench-deps has installed OpenBLAS.
OPENBLAS_CFLAGS = $(shell pkg-config --cflags openblas 2>/dev/null)
OPENBLAS_LIBS   = $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)

.PHONY: bench bench-deps bench-tools
bench: bench-deps
	$(MAKE) $(BIN) bench-tools
	bench/run

# After `data` (which runs install-deps itself), never beside it: one apt-get at a time.
bench-deps: data
	@pkg-config --exists openblas 2>/dev/null || MLP_BENCH_DEPS=1 scripts/install-deps

bench-tools: $(BENCH_DIR)/sgemm_bound $(BENCH_DIR)/allreduce $(BENCH_DIR)/kernel_rate

$(BENCH_DIR)/sgemm_bound: bench/sgemm_bound.c
	@mkdir -p $(dir $@)
	$(BENCH_CC) -std=c11 -O2 -g -Wall -Wextra $(OPENBLAS_CFLAGS) -o $@ $< $(OPENBLAS_LIBS)

# The FMA peak of a core and mlp's large kernels against it: the kernels as mlp has them.
$(BENCH_DIR)/kernel_rate: bench/kernel_rate.c bench/bench_util.h $(B)/src/kernels.o $(B)/src/kernels_ref.o
	@mkdir -p $(dir $@)
	$(BENCH_CC) -std=c11 -O2 -g -march=$(ARCH) -ffp-contract=fast -Wall -Wextra -fopenmp -Iinclude \
	    -o $@ $(filter-out %.h,$^) -lm

$(BENCH_DIR)/allreduce: bench/allreduce.c $(B)/src/dist.o $(B)/src/buildinfo.o $(B)/src/kernels.o
	@mkdir -p $(dir $@)
	mpicc -std=c11 -O2 -g -Wall -Wextra -fopenmp -Iinclude -o $@ $^ -lm

# Developer's probe (not run by make bench): exact mode's per-chunk conversion against the
# multiply-adds on this core (docs/performance.md, "Exact mode's floor on AVX2").
$(BENCH_DIR)/conv_probe: bench/conv_probe.c
	@mkdir -p $(dir $@)
	$(BENCH_CC) -std=c11 -O2 -g -Wall -Wextra -o $@ $<
