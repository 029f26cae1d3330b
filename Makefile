# The few commands people type. Each bootstraps .venv first (idempotent).
export MLFLOW_DISABLE_TELEMETRY := true
export LITELLM_LOCAL_MODEL_COST_MAP := True
VENV := .venv/bin

.PHONY: demo test test-fast bench lint venv
venv:
	@bash scripts/bootstrap.sh

demo: venv  ## the main job: the whole loop on the embedded defaults (offline model, SQLite MLflow)
	$(VENV)/promptgov loop

test: venv  ## the whole test suite
	$(VENV)/python -m pytest -n 2 --dist loadgroup

test-fast: venv  ## the edit loop: everything but the slow tests (servers, notebooks, venvs)
	$(VENV)/python -m pytest -n 2 --dist loadgroup -m "not slow"

bench: venv  ## the benchmarks whose figures the README records
	$(VENV)/python -m benchmarks

lint: venv
	$(VENV)/ruff check src tests benchmarks scripts
	$(VENV)/mypy
