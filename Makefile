# The two commands of the README, and helpers. The first target that needs Python creates .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bintut-installed

.PHONY: reproduce test lint lab book smoke record record-fashion-mnist bench-int mcu clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,notebooks,book,timm,onnx]'
	touch $(STAMP)

## The main job: the reference recipe on a GPU, the workshop preset on a CPU; writes results/. On CIFAR-100 where it
## is in data/ (or downloads), else on Fashion-MNIST: without either here it installs Debian's dataset-fashion-mnist
## (apt-get, when this machine has it) and says so; the command says in one line which data it runs on and why.
reproduce: $(STAMP)
	@if [ ! -f data/cifar-100-python/train ] && [ ! -d data/FashionMNIST/raw ] \
	    && [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then \
	  echo "no CIFAR-100 in data/: installing Fashion-MNIST from Debian (apt-get install dataset-fashion-mnist)"; \
	  ($(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q dataset-fashion-mnist) \
	    || echo "could not install dataset-fashion-mnist: reproduce will try to download CIFAR-100"; fi
	$(PY) -m bintut reproduce

## Every test: lint, the library tests and all notebooks in smoke mode.
test: $(STAMP)
	$(PY) -m ruff check bintut tests tools benchmarks notebooks
	# One intra-op thread per xdist worker (and per notebook kernel, which inherits it): two workers
	# with two threads each on a 2-core machine spin-wait each other into a crawl.
	OMP_NUM_THREADS=1 BINTUT_MODE=smoke $(PY) -m pytest -n 2 --dist loadscope tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider

lint: $(STAMP)
	$(PY) -m ruff check bintut tests tools benchmarks notebooks

## An end-to-end run on synthetic data: about 2 min on 2 quiet CPU cores (docs/benchmarks.md, "Measured here").
smoke: $(STAMP)
	$(PY) -m bintut train --preset smoke --out runs/smoke --resume

## Record the tutorial's stages into docs/recorded/<data>/<stage>/seed-<k>/: each run's metrics.jsonl and config.json,
## with provenance.json; the notebooks show the recording. The default is the real thing (CIFAR-100, full mode on a
## GPU; RECORD_ARGS as for python -m bintut record); `make record-fashion-mnist` re-records the Fashion-MNIST recording
## that ships: the baseline, then gradual (both) against abrupt and fp-continued with two seeds, then the one-control
## and one-quantizer stages with one (docs/results.md, for its wall time and machine). It resumes.
RECORD_ARGS ?= --data cifar100 --set download=true
FASHION_RECORD = --mode workshop --data fashion-mnist --baseline-epochs 8 --set epochs=2 --set train_subset=12000 \
  --set test_subset=2000 --set batch_size=64 --set eval_batch_size=500 --set wandb=disabled --set progress=false
record: $(STAMP)
	$(PY) -m bintut record $(RECORD_ARGS)

record-fashion-mnist: $(STAMP)
	$(PY) -m bintut record $(FASHION_RECORD) --stages both,abrupt,fp-continued --seeds 0,1
	$(PY) -m bintut record $(FASHION_RECORD) --stages p-only,ratio-only,weights,activations --seeds 0

## The smoke run as C on an emulated Cortex-M4 (QEMU mps2-an386), golden images checked bit for bit.
## Installs the Debian packages gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm if missing
## (apt-get; CI does not run this). Prints pass/fail per image, flash/RAM and instructions per image, for the
## fast kernel (all golden images) and the reference kernel (one image).
MCU_RUN ?= runs/smoke
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
mcu: $(STAMP)
	@command -v arm-none-eabi-gcc >/dev/null && command -v qemu-system-arm >/dev/null || { \
	  echo "installing gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm (apt-get)"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q \
	    --no-install-recommends gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm; }
	$(PY) -m bintut train --preset smoke --out $(MCU_RUN) --resume
	$(PY) -m bintut export $(MCU_RUN) --c $(MCU_RUN)/c
	$(PY) -m bintut.integer.c_build host $(MCU_RUN)/c
	$(PY) -m bintut.integer.c_build mcu $(MCU_RUN)/c
	$(PY) -m bintut.integer.c_build mcu $(MCU_RUN)/c --kernel reference --limit 1

## JupyterLab on the notebooks (as root, e.g. in a container, Jupyter needs --allow-root).
lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/ $$([ "$$(id -u)" = 0 ] && echo --allow-root)

## The notebooks as an HTML book, executed in MODE (smoke: offline, a few minutes): build/book/site/index.html.
MODE ?= smoke
book: $(STAMP)
	$(PY) tools/build_book.py --mode $(MODE)

## Free the run cache (./runs, notebooks/runs, $BINTUT_RUNS: python -m bintut clean, which says how much), results/
## and the build.
clean:
	@if [ -x $(PY) ]; then $(PY) -m bintut clean; \
	else echo "no $(VENV): removing runs/ and notebooks/runs/"; rm -rf runs notebooks/runs; fi
	rm -rf results build .pytest_cache
