# fuzz/fuzz.mk: libFuzzer harnesses for the config, IDX, checkpoint and HDF5 data loaders. Included at
# the end of the Makefile, whose variables (CC, CFLAGS, B, HDF5_*, INIH_*) it uses.
#
#   make fuzz                   install clang if missing (scripts/install-deps --fuzz), build
#                               build/fuzz/fuzz_{config,idx,checkpoint,h5data}, run each for
#                               FUZZ_SECONDS (default 60) on a copy of its seed corpus
#   make fuzz FUZZ_TARGETS=idx FUZZ_SECONDS=600
#   make fuzz-build             the four fuzzers only
#   make fuzz-replay            $(B)/fuzz/replay: the harnesses built with the normal CC and
#                               flags, no libFuzzer; tests/integration/fuzz-regressions.sh uses it
#   make fuzz-seeds             regenerate the seed corpora in fuzz/corpus/ (writes the repo)
#
# The fuzzers are built with clang, -fsanitize=fuzzer,address,undefined -g -O1, linked with
# only the module each one fuzzes; the system libraries (HDF5, inih, zlib) are not
# instrumented. See docs/robustness.md.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= config idx checkpoint h5data
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -g -O1 \
                -Wall -Wextra -Wshadow -Iinclude -Ifuzz $(HDF5_CFLAGS) $(INIH_CFLAGS) \
                $(FUZZ_SAN) -MMD -MP
FUZZ_LIBS    := $(HDF5_LIBS) -lhdf5_hl $(INIH_LIBS) -lz -lm
FB           := build/fuzz

.PHONY: fuzz fuzz-deps fuzz-build fuzz-replay fuzz-seeds

fuzz: fuzz-deps
	$(MAKE) fuzz-build
	fuzz/run $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-deps:
	scripts/install-deps --fuzz

fuzz-build: $(FUZZ_TARGETS:%=$(FB)/fuzz_%)

# Objects for the fuzzers: coverage-instrumented, in their own directory.
$(FB)/lf/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

# Each fuzzer links the module it fuzzes (listed here) and the shared helpers.
$(FB)/fuzz_config: $(FB)/lf/src/config.o $(FB)/lf/src/fsafe.o
FUZZ_DATA_OBJ := $(FB)/lf/src/data.o $(FB)/lf/src/data_idx.o $(FB)/lf/src/data_h5.o
$(FB)/fuzz_idx: $(FUZZ_DATA_OBJ) $(FB)/lf/src/fsafe.o
$(FB)/fuzz_h5data: $(FUZZ_DATA_OBJ) $(FB)/lf/src/fsafe.o
$(FB)/fuzz_checkpoint: $(FB)/lf/src/checkpoint.o $(FB)/lf/src/ckpt_schema.o $(FB)/lf/src/ckpt_read.o \
                      $(FB)/lf/src/fsafe.o
$(FB)/fuzz_%: $(FB)/lf/fuzz/fuzz_%.o $(FB)/lf/fuzz/fuzz_common.o
	$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $^ $(FUZZ_LIBS)

# The replay driver and the seed generator: normal compiler and flags (SAN=1 applies).
FUZZ_REPLAY_OBJ := $(B)/fuzz/replay.o $(B)/fuzz/fuzz_common.o $(B)/fuzz/fuzz_config.o \
                   $(B)/fuzz/fuzz_idx.o $(B)/fuzz/fuzz_checkpoint.o $(B)/fuzz/fuzz_h5data.o \
                   $(B)/src/config.o $(B)/src/data.o $(B)/src/data_idx.o $(B)/src/data_h5.o \
                   $(B)/src/checkpoint.o $(B)/src/ckpt_schema.o $(B)/src/ckpt_read.o \
                   $(B)/src/fsafe.o
$(B)/fuzz/%.o: CFLAGS += -DFUZZ_REPLAY -Ifuzz

$(B)/fuzz/replay: $(FUZZ_REPLAY_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Prints the path last, for scripts: replay=$$(make -s fuzz-replay | tail -n 1)
fuzz-replay: $(B)/fuzz/replay
	@echo $(B)/fuzz/replay

$(B)/fuzz/make-seeds: $(B)/fuzz/make-seeds.o $(B)/src/config.o $(B)/src/checkpoint.o \
                       $(B)/src/ckpt_schema.o $(B)/src/ckpt_read.o $(B)/src/fsafe.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

fuzz-seeds: $(B)/fuzz/make-seeds
	rm -rf fuzz/corpus
	mkdir -p fuzz/corpus
	$(B)/fuzz/make-seeds fuzz/corpus

-include $(wildcard $(FB)/lf/src/*.d $(FB)/lf/fuzz/*.d $(B)/fuzz/*.d)
