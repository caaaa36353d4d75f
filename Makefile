# Set-up and entry points. `make demo` and `make test` each install what they
# need on a fresh Debian machine: Debian packages (the software Vulkan adapter,
# Fashion-MNIST, the fortunes text of examples/charlm) and a virtual environment in .venv with the package in it.

VENV ?= .venv
PY := $(VENV)/bin/python
DEBIAN_PACKAGES := mesa-vulkan-drivers libvulkan1 dataset-fashion-mnist graphviz fortunes
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test bench torch-cpu deploy deploy-build system clean

demo: system $(VENV)/.installed
	$(PY) examples/xor/main.py
	$(PY) examples/mnist/main.py

# INTRICATE_REQUIRE_GPU=1 and INTRICATE_REQUIRE_DATA=1 make the GPU and Fashion-MNIST
# tests fail, not skip, without an adapter or the data.
test: system $(VENV)/.installed
	INTRICATE_REQUIRE_GPU=1 INTRICATE_REQUIRE_DATA=1 $(PY) -m pytest

# PyTorch is optional: without it (`make torch-cpu` installs it into .venv) its
# column stays empty.
bench: system $(VENV)/.installed
	$(PY) benchmarks/compare.py
	$(PY) benchmarks/gpu.py

# PyTorch's CPU build, for the parity tests and `make bench`: the build the tests
# run with (a plain `pip install torch` on Linux gets the CUDA build, whose
# triton once crashed beside Mesa's LLVM: README, "On the GPU").
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
torch-cpu: $(VENV)/.installed
	$(PY) -m pip install "torch==2.13.0+cpu" --index-url $(TORCH_INDEX)

# The trained XoR network in a C program: `make deploy`, then
# examples/deploy/out/xor 1 0. deploy-build compiles what --export wrote to DEPLOY.
DEPLOY ?= examples/deploy/out
deploy: $(VENV)/.installed
	$(PY) examples/xor/main.py --out $(DEPLOY) --export $(DEPLOY)
	$(MAKE) --no-print-directory deploy-build DEPLOY=$(DEPLOY)

deploy-build:
	$(CC) -std=c99 -O2 -Wall -Wextra -Werror -pedantic -I$(DEPLOY) \
		examples/deploy/main.c $(DEPLOY)/xor_net.c -o $(DEPLOY)/xor -lm

system:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e ".[dev,examples,export,tune,plot,tensorboard]"
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis examples/*/out
