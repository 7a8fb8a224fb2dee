# GenProp — every target installs what it needs into .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

export OMP_NUM_THREADS ?= 2
export RAY_DISABLE_USAGE_STATS := 1
export HF_HUB_OFFLINE := 1

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU wheel first: a looser pin would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project (CPU torch)

lint: $(STAMP) ## ruff check + format check + import-linter layering contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: lint ## Lint, then the fast CPU test suite
	$(BIN)/pytest $(PYTEST_ARGS)

test-slow: $(STAMP) ## The slow tests too
	$(BIN)/pytest -m 'not gpu' $(PYTEST_ARGS)

test-gpu: $(STAMP) ## GPU tests (needs CUDA)
	$(BIN)/pytest -m gpu $(PYTEST_ARGS)

format: $(STAMP) ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean: ## Remove outputs (keeps .venv)
	rm -rf outputs multirun .pytest_cache .ruff_cache

.PHONY: help install lint test test-slow test-gpu format clean

# ---------------------------------------------------------------------------------------------
# The demo: the real system's chain in miniature on the toy world. Toy world -> shards (Ray) ->
# stage 0 (a learned video autoencoder, the demo's stand-in for Wan's VAE) -> genprop-cache
# (the shards' latents) -> stage 1 (I2V) and stage 2 (GenProp) on the 16x16 latent grid from the
# cache -> benchmark -> report. Every step is a file target, so a rerun reuses the finished steps
# (training also resumes). `make demo-pixel` trains the same DiT on patchified pixels instead
# (the demo before the miniature), on the same world, shards and cases, for the comparison.
DEMO ?= outputs/demo
DEMO_VIDEOS ?= 300
DEMO_SAMPLES ?= 2048
DEMO_STAGE1_STEPS ?= 900
DEMO_STAGE2_STEPS ?= 700
DEMO_STAGE1_ARGS ?=  # extra genprop-train overrides for stage 1
DEMO_STAGE2_ARGS ?=  # extra genprop-train overrides for stage 2, e.g. model.loss_weights.grad=0
DEMO_CASES ?= 8
# Stage 0: a 4x4 pixel-unshuffle, a linear path started at the cells' principal components and
# convolutions at width 64 beside it, 16 latent channels, trained for DEMO_CODEC_STEPS (about 3
# minutes on 2 cores; a step count, not a time, so the demo stays deterministic) on the demo's toy
# world with the squared error; its PSNR is measured on a world of another seed
# (docs/experiments.md, "stage 0").
DEMO_CODEC_STEPS ?= 3000
DEMO_CODEC_ARGS ?= --latent-channels 16 --width 64 --downsamples 0 --unshuffle 4 --linear-skip 1
# The demo's evaluation samples with the export's own defaults
# (conf/training/experiment/demo_latent_genprop.yaml, model.net.overrides.sampling: 16 steps,
# guidance 5, edit and insertion 1 — the choice `make guidance-sweep` printed on validation cases of
# another world seed, not on the benchmark; the paper samples with guidance 20). Set these to
# override them at evaluation time, e.g. DEMO_GUIDANCE=3,tracking=8 DEMO_STEPS=32 (genprop-eval
# --guidance G,TASK=G... --steps N).
DEMO_STEPS ?=
DEMO_GUIDANCE ?=
EVAL_STEPS = $(if $(DEMO_STEPS),--steps $(DEMO_STEPS))
EVAL_GUIDANCE = $(if $(DEMO_GUIDANCE),--guidance $(DEMO_GUIDANCE))
DEMO_GUIDANCES ?= 1 2 3 5 8 12
DEMO_WORLD_ARGS = --videos $(DEMO_VIDEOS) --size 64x64 --frames 24
DEMO_DATA_ARGS := source=toyworld clip.frames=8 clip.size=64 ray.num_cpus=2 samples_per_shard=128 \
	recipes.copy_paste.synthetic_effects=0.5 mix=demo
DEMO_CACHE_ARGS ?= ray.num_cpus=2  # more genprop-cache overrides, e.g. ray.enabled=false
DEMO_STAGE1_EXPERIMENT := demo_latent_i2v
DEMO_STAGE2_EXPERIMENT := demo_latent_genprop
DEMO_EVAL_ARGS :=
# What every genprop-train of the demo's model adds: the stage-0 codec (the model and the cache
# must name the same codec folder: genprop-train checks the cache's encoder key, which includes
# the sha256 of the codec's files, against its own) and the cached latents.
DEMO_TRAIN_DATA = model.net.overrides.codec.path=$(DEMO)/codec \
	data.latents=$(DEMO)/latents data.val_latents=$(DEMO)/val_latents
# Benchmark cases and the guidance-sweep validation cases: same shape, different world seeds.
DEMO_CASES_ARGS = --cases-per-task $(DEMO_CASES) --size 64x64 --frames 16
# The report is also published as docs/results.md (+ docs/results/); make demo-gpu does not publish.
DEMO_PUBLISH ?= --publish docs

# The data of a demo, written once for `make demo` and `make demo-gpu`: $(call demo_data,P) makes
# the rules for the toy world, the shards, the validation shards and the benchmark cases under
# $(P), configured by P_WORLD_ARGS (genprop-toyworld write), P_DATA_ARGS and P_SAMPLES
# (genprop-data) and P_CASES_ARGS (the benchmark).
define demo_data
$$($(1))/toyworld/world.json: | $$(STAMP)
	$$(BIN)/genprop-toyworld write --out $$($(1))/toyworld $$($(1)_WORLD_ARGS)

$$($(1))/shards/manifest.json: $$($(1))/toyworld/world.json
	$$(BIN)/genprop-data $$($(1)_DATA_ARGS) source.root=$$($(1))/toyworld output_dir=$$($(1))/shards \
		num_samples=$$($(1)_SAMPLES) seed=0

$$($(1))/val_shards/manifest.json: $$($(1))/toyworld/world.json
	$$(BIN)/genprop-data $$($(1)_DATA_ARGS) source.root=$$($(1))/toyworld output_dir=$$($(1))/val_shards \
		num_samples=64 samples_per_shard=32 seed=1

$$($(1))/cases/index.json: | $$(STAMP)
	$$(BIN)/genprop-toyworld benchmark --out $$($(1))/cases $$($(1)_CASES_ARGS)
endef

# A pixel-space demo model, for `make demo-pixel` and `make demo-gpu`: $(call demo_pixel,P,D)
# trains stage 1 and 2 on the shards of $(D) with P_STAGE1_EXPERIMENT / P_STAGE1_STEPS and
# P_STAGE2_EXPERIMENT / P_STAGE2_STEPS / P_STAGE2_ARGS (genprop-train), evaluates on the cases of
# $(D) with P_EVAL_ARGS (genprop-eval) and writes the report under $(P) (P_PUBLISH).
define demo_pixel
$$($(1))/train/stage1/export/last/config.json: $$($(2))/shards/manifest.json $$($(2))/val_shards/manifest.json
	$$(BIN)/genprop-train experiment=$$($(1)_STAGE1_EXPERIMENT) name=stage1 paths.log_dir=$$($(1))/train \
		data.shards=$$($(2))/shards data.val_shards=$$($(2))/val_shards \
		trainer.max_steps=$$($(1)_STAGE1_STEPS) resume=auto

$$($(1))/train/stage2/export/last/config.json: $$($(1))/train/stage1/export/last/config.json
	$$(BIN)/genprop-train experiment=$$($(1)_STAGE2_EXPERIMENT) name=stage2 paths.log_dir=$$($(1))/train \
		data.shards=$$($(2))/shards data.val_shards=$$($(2))/val_shards \
		model.init_from=$$($(1))/train/stage1/export/last \
		trainer.max_steps=$$($(1)_STAGE2_STEPS) resume=auto $$($(1)_STAGE2_ARGS)

$$($(1))/eval/metrics.json: $$($(1))/train/stage2/export/last/config.json $$($(2))/cases/index.json
	$$(BIN)/genprop-eval --cases $$($(2))/cases --model $$($(1))/train/stage2/export/last \
		$$($(1)_EVAL_ARGS) $$(EVAL_STEPS) $$(EVAL_GUIDANCE) --out $$($(1))/eval

$$($(1))/report.md: $$($(1))/eval/metrics.json evaluation/demo_report.py
	$$(BIN)/python -m evaluation.demo_report --demo-dir $$($(1)) --cases $$($(2))/cases $$($(1)_PUBLISH)
endef

$(eval $(call demo_data,DEMO))

# Stage 0 (docs/experiments.md, "stage 0"): the learned video autoencoder on the demo's toy world,
# its PSNR measured on a world of another seed -> $(DEMO)/codec/{codec.json,codec.safetensors,report.json}.
$(DEMO)/codec_heldout/world.json: | $(STAMP)
	$(BIN)/genprop-toyworld write --out $(DEMO)/codec_heldout $(DEMO_WORLD_ARGS) --videos 20 --seed 20000

$(DEMO)/codec/report.json: $(DEMO)/toyworld/world.json $(DEMO)/codec_heldout/world.json
	$(BIN)/python -m training.codec_train --data $(DEMO)/toyworld --heldout $(DEMO)/codec_heldout \
	  --out $(DEMO)/codec --steps $(DEMO_CODEC_STEPS) --threads $(OMP_NUM_THREADS) $(DEMO_CODEC_ARGS)

# genprop-cache: the shards' latents under the stage-0 codec (a retrained codec makes new
# latents: overwrite=true replaces the older cache).
$(DEMO)/latents/manifest.json: $(DEMO)/codec/report.json $(DEMO)/shards/manifest.json
	$(BIN)/genprop-cache model=genprop model.net.preset_name=demo_latent \
	  '+model.net.overrides.codec.path=$(DEMO)/codec' data.shards=$(DEMO)/shards \
	  output_dir=$(DEMO)/latents overwrite=true $(DEMO_CACHE_ARGS)

$(DEMO)/val_latents/manifest.json: $(DEMO)/codec/report.json $(DEMO)/val_shards/manifest.json
	$(BIN)/genprop-cache model=genprop model.net.preset_name=demo_latent \
	  '+model.net.overrides.codec.path=$(DEMO)/codec' data.shards=$(DEMO)/val_shards \
	  output_dir=$(DEMO)/val_latents overwrite=true $(DEMO_CACHE_ARGS)

$(DEMO)/train/stage1/export/last/config.json: $(DEMO)/latents/manifest.json $(DEMO)/val_latents/manifest.json
	$(BIN)/genprop-train experiment=$(DEMO_STAGE1_EXPERIMENT) name=stage1 paths.log_dir=$(DEMO)/train \
	  $(DEMO_TRAIN_DATA) trainer.max_steps=$(DEMO_STAGE1_STEPS) resume=auto $(DEMO_STAGE1_ARGS)

$(DEMO)/train/stage2/export/last/config.json: $(DEMO)/train/stage1/export/last/config.json
	$(BIN)/genprop-train experiment=$(DEMO_STAGE2_EXPERIMENT) name=stage2 paths.log_dir=$(DEMO)/train \
	  $(DEMO_TRAIN_DATA) model.init_from=$(DEMO)/train/stage1/export/last \
	  trainer.max_steps=$(DEMO_STAGE2_STEPS) resume=auto $(DEMO_STAGE2_ARGS)

# The export bundles its codec (export/last/codec/), so genprop-eval needs nothing else.
$(DEMO)/eval/metrics.json: $(DEMO)/train/stage2/export/last/config.json $(DEMO)/cases/index.json
	$(BIN)/genprop-eval --cases $(DEMO)/cases --model $(DEMO)/train/stage2/export/last \
	  $(DEMO_EVAL_ARGS) $(EVAL_STEPS) $(EVAL_GUIDANCE) --out $(DEMO)/eval

$(DEMO)/report.md: $(DEMO)/eval/metrics.json evaluation/demo_report.py
	$(BIN)/python -m evaluation.demo_report --demo-dir $(DEMO) $(DEMO_PUBLISH)

demo: $(DEMO)/report.md ## The main job end to end on the toy world (2 CPU cores, ~30 min): writes outputs/demo/report.md
	@echo "report: $(DEMO)/report.md"

data: $(DEMO)/shards/manifest.json ## Build the demo's training shards from the toy world (Ray)
	$(BIN)/genprop-preview $(DEMO)/shards --out $(DEMO)/shards_preview.png

demo-codec: $(DEMO)/codec/report.json ## Stage 0 only: train the demo's video autoencoder; writes outputs/demo/codec/report.json
	@cat $(DEMO)/codec/report.json | $(BIN)/python -c "import json,sys; r=json.load(sys.stdin); print('held-out PSNR', r['heldout_psnr_db'], 'dB')"

# The pixel-space demo (the demo before the miniature): the same DiT on 8x8 pixel patches, on the
# demo's world, shards and cases, for the comparison in docs/experiments.md. DEMO_PIXEL_SCALE
# multiplies its steps (1: 1,200 + 1,300, the budget it had as `make demo`, 32 minutes of training
# on 2 cores); 0.66 gives it the wall-clock of `make demo`'s stage 0, cache and both stages
# (about 21 minutes on 2 cores).
DEMO_PIXEL ?= outputs/demo_pixel
DEMO_PIXEL_SCALE ?= 0.66
DEMO_PIXEL_STAGE1_STEPS = $(shell awk 'BEGIN{print int(1200 * $(DEMO_PIXEL_SCALE) + 0.5)}')
DEMO_PIXEL_STAGE2_STEPS = $(shell awk 'BEGIN{print int(1300 * $(DEMO_PIXEL_SCALE) + 0.5)}')
DEMO_PIXEL_STAGE1_EXPERIMENT := demo_i2v
DEMO_PIXEL_STAGE2_EXPERIMENT := demo_genprop
DEMO_PIXEL_STAGE2_ARGS ?=
DEMO_PIXEL_EVAL_ARGS := $(DEMO_EVAL_ARGS)
DEMO_PIXEL_PUBLISH ?=
$(eval $(call demo_pixel,DEMO_PIXEL,DEMO))

demo-pixel: $(DEMO_PIXEL)/report.md ## The demo's DiT on patchified pixels (the comparison); writes outputs/demo_pixel/report.md
	@echo "report: $(DEMO_PIXEL)/report.md"

# The miniature against the pixel-space model on validation cases (world seed 20000, not the
# benchmark's): each model with its export's sampling defaults (preservation on) and with
# --preserve off, the same samples otherwise; the baselines once, for reference. Writes
# $(DEMO)/compare/{on,off}/compare.{md,json} (docs/experiments.md, "The miniature against the
# pixel-space model"). DEMO_PIXEL_SCALE sets the pixel model's budget (equal wall-clock: see there).
demo-compare: $(DEMO)/train/stage2/export/last/config.json $(DEMO_PIXEL)/train/stage2/export/last/config.json $(DEMO)/val_cases/index.json ## The demo's model vs the pixel-space model on validation cases, preservation on and off
	for run in latent=$(DEMO) pixel=$(DEMO_PIXEL); do \
	  name=$${run%%=*}; dir=$${run#*=}; \
	  for p in on off; do \
	    out=$(DEMO)/compare/$$name-$$p; \
	    test -f $$out/metrics.json || $(BIN)/genprop-eval --cases $(DEMO)/val_cases \
	      --model $$dir/train/stage2/export/last $(EVAL_STEPS) $(EVAL_GUIDANCE) --out $$out \
	      $$( [ $$name-$$p = latent-on ] || echo --baselines none ) \
	      $$( [ $$p = off ] && echo --preserve off ) || exit 1; \
	  done; \
	done
	for p in on off; do \
	  $(BIN)/python -m evaluation.compare --run latent-$$p=$(DEMO)/compare/latent-$$p \
	    --run pixel-$$p=$(DEMO)/compare/pixel-$$p $$( [ $$p = off ] && echo --run latent-on=$(DEMO)/compare/latent-on ) \
	    --out $(DEMO)/compare/$$p || exit 1; \
	done

ABLATIONS := no_mpd no_ra_loss gate  # conf/training/ablation/<name>.yaml on demo_genprop; the paper's two first
ablate: $(DEMO)/train/stage1/export/last/config.json $(DEMO)/cases/index.json ## Paper Table 3 ablations on the demo benchmark (longer)
	for a in $(ABLATIONS); do \
	  test -f $(DEMO)/ablate/$$a/export/last/config.json || $(BIN)/genprop-train experiment=$(DEMO_STAGE2_EXPERIMENT) \
	    ablation=$$a name=$$a paths.log_dir=$(DEMO)/ablate $(DEMO_TRAIN_DATA) \
	    model.init_from=$(DEMO)/train/stage1/export/last trainer.max_steps=$(DEMO_STAGE2_STEPS) resume=auto || exit 1; \
	  test -f $(DEMO)/ablate/$$a/eval/metrics.json || $(BIN)/genprop-eval --cases $(DEMO)/cases \
	    --model $(DEMO)/ablate/$$a/export/last --baselines none $(EVAL_STEPS) $(EVAL_GUIDANCE) \
	    --out $(DEMO)/ablate/$$a/eval || exit 1; \
	done
	$(BIN)/python -m evaluation.demo_report --demo-dir $(DEMO)

$(DEMO)/val_cases/index.json: | $(STAMP)
	$(BIN)/genprop-toyworld benchmark --out $(DEMO)/val_cases $(DEMO_CASES_ARGS) --seed 20000

guidance-sweep: $(DEMO)/train/stage2/export/last/config.json $(DEMO)/val_cases/index.json ## Pick DEMO_GUIDANCE per task on validation cases (world seed 20000, not the benchmark's)
	for g in $(DEMO_GUIDANCES); do \
	  $(BIN)/genprop-eval --cases $(DEMO)/val_cases --model $(DEMO)/train/stage2/export/last \
	    --baselines none $(EVAL_STEPS) --guidance $$g --out $(DEMO)/guidance/g$$g || exit 1; \
	done
	$(BIN)/python -m evaluation.guidance $(addprefix $(DEMO)/guidance/g,$(DEMO_GUIDANCES)) \
	    --out $(DEMO)/guidance/best.json

# Pixel-preservation settings scored side by side on the same validation samples (no resampling):
# the choice behind the export's sampling.preserve; see docs/experiments.md.
PRESERVE_VARIANTS ?= mpd_d3b2=source=mpd,dilate=3,blur=2 \
	change_0.10=source=change,threshold=0.1 change_0.15=source=change,threshold=0.15 \
	linked_0.10=source=change,threshold=0.1,link_radius=1 \
	linked_0.10_r2=source=change,threshold=0.1,link_radius=2 \
	linked_0.12=source=change,threshold=0.12,link_radius=1 \
	linked_0.15=source=change,threshold=0.15,link_radius=1 \
	linked_0.10_held=source=change,threshold=0.1,link_radius=1,fixed_region_tasks=outpainting
# GenProp on the validation cases with preservation off: the samples that the preservation and
# mask-threshold sweeps score without resampling.
$(DEMO)/preserve/off/metrics.json: $(DEMO)/train/stage2/export/last/config.json $(DEMO)/val_cases/index.json
	$(BIN)/genprop-eval --cases $(DEMO)/val_cases \
	  --model $(DEMO)/train/stage2/export/last --baselines flow_propagation $(EVAL_STEPS) \
	  $(EVAL_GUIDANCE) --preserve off --out $(DEMO)/preserve/off

preserve-sweep: $(DEMO)/preserve/off/metrics.json ## Score pixel-preservation settings on validation cases (world seed 20000)
	$(BIN)/python -m evaluation.preserve_sweep --cases $(DEMO)/val_cases \
	  --outputs $(DEMO)/preserve/off/genprop $(addprefix --variant ,$(PRESERVE_VARIANTS)) \
	  --out $(DEMO)/preserve/sweep

# The MPD's probability from which a pixel is the edited region, per task: the export's
# sampling.mask_threshold / task_mask_threshold (conf/training/experiment/demo_genprop.yaml).
mask-threshold-sweep: $(DEMO)/preserve/off/metrics.json ## Pick the MPD mask threshold per task on validation cases (world seed 20000)
	$(BIN)/python -m evaluation.mask_threshold --cases $(DEMO)/val_cases \
	  --outputs $(DEMO)/preserve/off/genprop --out $(DEMO)/mask_threshold.json

# Quality vs training compute: both stages' steps times each scale, same world, shards, stage-0
# codec, cached latents and cases; scale 1 is the demo itself. Writes $(DEMO)/curve/curve.{md,json,png}.
DEMO_CURVE_SCALES ?= 0.5 2 4
demo-curve: $(DEMO)/eval/metrics.json ## Quality vs training compute (the demo at 0.5x, 2x, 4x its steps; hours)
	for s in $(DEMO_CURVE_SCALES); do \
	  d=$(DEMO)/curve/x$$s; \
	  n1=$$(awk "BEGIN{print int($(DEMO_STAGE1_STEPS) * $$s + 0.5)}"); \
	  n2=$$(awk "BEGIN{print int($(DEMO_STAGE2_STEPS) * $$s + 0.5)}"); \
	  test -f $$d/stage2/export/last/config.json || { \
	    $(BIN)/genprop-train experiment=$(DEMO_STAGE1_EXPERIMENT) name=stage1 paths.log_dir=$$d \
	      $(DEMO_TRAIN_DATA) trainer.max_steps=$$n1 resume=auto $(DEMO_STAGE1_ARGS) && \
	    $(BIN)/genprop-train experiment=$(DEMO_STAGE2_EXPERIMENT) name=stage2 paths.log_dir=$$d \
	      $(DEMO_TRAIN_DATA) $(DEMO_STAGE2_ARGS) \
	      model.init_from=$$d/stage1/export/last trainer.max_steps=$$n2 resume=auto; } || exit 1; \
	  test -f $$d/eval/metrics.json || $(BIN)/genprop-eval --cases $(DEMO)/cases \
	    --model $$d/stage2/export/last --baselines none $(EVAL_STEPS) $(EVAL_GUIDANCE) \
	    --out $$d/eval || exit 1; \
	done
	$(BIN)/python -m evaluation.curve --run 1=$(DEMO)/eval \
	  $(foreach s,$(DEMO_CURVE_SCALES),--run $(s)=$(DEMO)/curve/x$(s)/eval) --out $(DEMO)/curve

# The demo on one H100/H200: the same chain at 16x128x128 clips with the toy_gpu preset (65 M
# parameters; conf/training/experiment/toy_gpu_i2v.yaml and toy_gpu.yaml, each sized for about 4
# GPU minutes, an estimate written there). Same recipe, benchmark and report as `make demo`.
DEMO_GPU ?= outputs/demo_gpu
DEMO_GPU_VIDEOS ?= 600
DEMO_GPU_SAMPLES ?= 8192
DEMO_GPU_STAGE1_STEPS ?= 2500
DEMO_GPU_STAGE2_STEPS ?= 1600
DEMO_GPU_STAGE2_ARGS ?=
DEMO_GPU_STAGE1_EXPERIMENT := toy_gpu_i2v
DEMO_GPU_STAGE2_EXPERIMENT := toy_gpu
DEMO_GPU_WORLD_ARGS = --videos $(DEMO_GPU_VIDEOS) --size 128x128 --frames 32 --workers 8
DEMO_GPU_EVAL_ARGS := --device cuda
DEMO_GPU_DATA_ARGS := source=toyworld clip.frames=16 clip.size=128 ray.num_cpus=8 \
	samples_per_shard=128 recipes.copy_paste.synthetic_effects=0.5 mix=demo
# Cases twice the model's clip, as in `make demo`: propagation runs over two windows.
DEMO_GPU_CASES_ARGS = --cases-per-task $(DEMO_CASES) --size 128x128 --frames 32
DEMO_GPU_PUBLISH ?=

$(eval $(call demo_data,DEMO_GPU))
$(eval $(call demo_pixel,DEMO_GPU,DEMO_GPU))

demo-gpu: $(DEMO_GPU)/report.md ## The demo at 128x128 with a 65 M-parameter model (one H100/H200)
	@echo "report: $(DEMO_GPU)/report.md"

# The genprop-app page on the demo's GenProp export, with the demo's benchmark cases to pick from.
APP_MODEL ?= $(DEMO)/train/stage2/export/last
APP_PORT ?= 7860
app: | $(STAMP) ## Serve the genprop-app page on the demo's model (http://127.0.0.1:APP_PORT; make demo first)
	@test -f $(APP_MODEL)/config.json || { echo "make app: no model at $(APP_MODEL); run \`make demo\` first (or set APP_MODEL=EXPORT)"; exit 1; }
	$(BIN)/genprop-app --model $(APP_MODEL) --port $(APP_PORT) $(if $(wildcard $(DEMO)/cases/index.json),--cases $(DEMO)/cases)

toyworld-preview: | $(STAMP) ## Regenerate docs/toyworld.png
	$(BIN)/genprop-toyworld write --out outputs/toyworld_preview --videos 6 --size 96x96
	$(BIN)/genprop-toyworld preview --root outputs/toyworld_preview --out docs/toyworld.png --videos 3

.PHONY: demo demo-codec demo-pixel demo-compare data ablate guidance-sweep preserve-sweep mask-threshold-sweep demo-curve demo-gpu toyworld-preview app

# ---------------------------------------------------------------------------------------------
# Benchmarks: JSON + markdown table under outputs/bench/ (never timed tests).
# Extra bench-data arguments, e.g. --ray-cluster HOST:PORT (2 nodes vs 1; scripts/ci/ray_cluster_up.sh
# prints the address of its cluster).
BENCH_DATA_ARGS ?=
# Real sample videos for bench-data (empty: the toy world only).
BENCH_SAMPLES ?= $(wildcard ../shared/data)
bench-data: | $(STAMP) ## Data pipeline vs the bare decode floor, per stage, Ray scaling, memory
	$(BIN)/python -m benchmarks.data --out outputs/bench/data.json \
		$(if $(BENCH_SAMPLES),--samples-root $(BENCH_SAMPLES)) $(BENCH_DATA_ARGS)

bench-train: | $(STAMP) ## Training step vs loader samples/s at demo size (+ bf16/MFU on a GPU)
	$(BIN)/python -m benchmarks.train --out outputs/bench/train.json

# On a GPU machine: make bench-model BENCH_MODEL_ARGS="--preset small --preset base --device cuda"
BENCH_MODEL_ARGS ?= --preset demo --batch 4 --threads 2 --iters 5
bench-model: | $(STAMP) ## GenProp vs bare I2V step time, sampling time, memory per model preset
	$(BIN)/python -m benchmarks.model $(BENCH_MODEL_ARGS) --out outputs/bench/model.json

bench-gpu: | $(STAMP) ## GPU: bf16 GenProp step time, peak memory, MFU (Wan-14B width cut in depth + presets; needs CUDA)
	$(BIN)/python -m benchmarks.gpu --out outputs/bench/gpu

bench-cache: | $(STAMP) ## Latent cache: step from cache vs pixels, build vs VAE-encode floor, bytes/sample
	$(BIN)/python -m benchmarks.cache --out outputs/bench/cache

# On a GPU machine: make bench-propagate BENCH_PROPAGATE_ARGS="--device cuda"
BENCH_PROPAGATE_ARGS ?=
bench-propagate: | $(STAMP) ## Propagation s/frame/step + peak memory: fp32, bf16, offload model/sequential, 2 sequence-parallel ranks
	$(BIN)/python -m benchmarks.propagate $(BENCH_PROPAGATE_ARGS) --out outputs/bench/propagate

bench-propagate-memory: | $(STAMP) ## genprop-propagate's peak host memory on N and 4N frames (ratio ~1: streamed)
	$(BIN)/python -m benchmarks.propagate_memory --out outputs/bench/propagate_memory

bench: bench-data bench-train bench-model bench-cache ## All CPU benchmarks (bench-gpu on a GPU machine)

.PHONY: bench bench-data bench-train bench-model bench-gpu bench-cache bench-propagate
.PHONY: bench-propagate-memory

gpu-check: | $(STAMP) ## One GPU check (~8 min on one H100): gpu tests + bench-gpu + bench-propagate on cuda + a shortened demo-gpu -> outputs/gpu_check/gpu_check.json
	$(BIN)/python -m benchmarks.gpu_check --out outputs/gpu_check

.PHONY: gpu-check
