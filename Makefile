# mlp: data-parallel two-layer perceptron trainer (MPI + OpenMP, HDF5 checkpoints).
#
#   make run     install missing Debian packages, fetch MNIST, build, train configs/mnist.ini
#                (ARGS='--set train.epochs=1' adds mlp arguments)
#   make test    the same set-up, then every test (unit + integration)
#   make         build ./mlp only
#
# Switches: SAN=1 (AddressSanitizer + UBSan), DEBUG=1 (-O0), ARCH=x86-64 (generic target,
# default native), KVL=16 (the kernels' vector width forced), NP=8 (ranks for `make run`).

CC      ?= mpicc
ifeq ($(origin CC),default)
CC      := mpicc
endif
ARCH    ?= native
NP      ?= 8
CONFIG  ?= configs/mnist.ini

HDF5_CFLAGS := $(shell pkg-config --cflags hdf5-serial 2>/dev/null || pkg-config --cflags hdf5 2>/dev/null)
HDF5_LIBS   := $(shell pkg-config --libs hdf5-serial 2>/dev/null || pkg-config --libs hdf5 2>/dev/null)
INIH_CFLAGS := $(shell pkg-config --cflags inih 2>/dev/null)
INIH_LIBS   := $(shell pkg-config --libs inih 2>/dev/null || echo -linih)

OPT     := -O2
ifeq ($(DEBUG),1)
OPT     := -O0
endif
CFLAGS  ?=
# -ffp-contract=off: ISO C rounding of every operation (gcc's default under -std=c11, not
# clang's), which the bit-for-bit twins of src/optim.c and src/augment.c rely on; the
# kernels' OPT below turns contraction on after it.
CFLAGS  += -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -ffp-contract=off $(OPT) -g -march=$(ARCH) \
           -Wall -Wextra -Wshadow -fopenmp -Iinclude $(HDF5_CFLAGS) $(INIH_CFLAGS) -MMD -MP
LDLIBS  += $(HDF5_LIBS) -lhdf5_hl $(INIH_LIBS) -lz -lm
LDFLAGS += -fopenmp
# Each variant builds in its own directory, so switching never mixes objects.
B       := build
BIN     := mlp
ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
B       := build/san
BIN     := build/san/mlp
endif
ifneq ($(ARCH),native)
B       := $(B)/$(ARCH)
BIN     := $(B)/mlp
endif
# KVL=16 (or 8, 4): the kernels' vector width forced (KERNELS_VL), e.g. AVX-512's 8 x 32
# micro-tiles run on an AVX2 machine (tests/integration/generic-build.sh).
ifneq ($(KVL),)
B       := $(B)/vl$(KVL)
BIN     := $(B)/mlp
$(B)/src/kernels.o: CFLAGS += -DKERNELS_VL=$(KVL)
endif

# The kernels carry the flops: let the vectoriser work hard there. Contraction to FMA is
# safe for exactness because every output element is always computed by the same code
# path whatever the thread or rank count (see docs/reduction.md).
$(B)/src/kernels.o: OPT := $(if $(filter 1,$(DEBUG)),-O0,-O3 -ffp-contract=fast)
# The reference twin rounds every operation as written (ISO C's default, made explicit).
$(B)/src/kernels_ref.o: OPT += -ffp-contract=off

SRC     := $(wildcard src/*.c)
OBJ     := $(SRC:%.c=$(B)/%.o)
LIBOBJ  := $(filter-out $(B)/src/main.o,$(OBJ))
UNIT    := $(patsubst tests/unit/%.c,$(B)/tests/%,$(wildcard tests/unit/test_*.c))

.PHONY: all run test deps data clean
all: $(BIN)

$(BIN): $(OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/tests/test_%: tests/unit/test_%.c tests/unit/reference.c $(LIBOBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -Itests/unit -o $@ $^ $(LDLIBS) -lcmocka

# Provenance (include/buildinfo.h): written into build-info.h, which is rewritten only when
# a value changes, so that a new commit rebuilds one object.
, := ,
BUILD_COMMIT   := $(shell git describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)
BUILD_COMPILER := $(shell $(CC) --version 2>/dev/null | sed -n 1p)
BUILD_FLAGS    := $(OPT) -march=$(ARCH) (kernels: $(if $(filter 1,$(DEBUG)),-O0,-O3 -ffp-contract=fast))$(if $(filter 1,$(SAN)), -fsanitize=address$(,)undefined)
$(B)/build-info.h: FORCE
	@mkdir -p $(dir $@)
	@printf '#define MLP_BUILD_COMMIT "%s"\n#define MLP_BUILD_COMPILER "%s via $(CC)"\n#define MLP_BUILD_FLAGS "%s"\n#define MLP_BUILD_ARCH "%s"\n' \
	    '$(BUILD_COMMIT)' '$(BUILD_COMPILER)' '$(BUILD_FLAGS)' '$(ARCH)' > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi
$(B)/src/buildinfo.o: $(B)/build-info.h
$(B)/src/buildinfo.o: CFLAGS += -I$(B)
.PHONY: FORCE
FORCE:

deps:
	scripts/install-deps

data: deps
	scripts/fetch-mnist

# ARGS: more mlp arguments, e.g. make run ARGS='--set train.epochs=1'
run: data
	$(MAKE) $(BIN)
	scripts/mpirun-local -np $(NP) ./$(BIN) $(CONFIG) $(ARGS)

test: data
	$(MAKE) $(BIN) $(UNIT)
	MLP=$(CURDIR)/$(BIN) tests/run-all $(UNIT)

clean:
	rm -rf build mlp

-include $(OBJ:.o=.d)
-include fuzz/fuzz.mk
-include bench/bench.mk
