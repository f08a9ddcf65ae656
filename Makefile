# The two set-up commands in the README are `make demo` and `make test`.
SHELL := bash
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PY_SOURCES := chestx tests benchmarks
# pytest-xdist workers for `make test` (tests/deploy stays on one of them; 0: one process)
TEST_WORKERS ?= 2

# uv.lock pins every package; pip installs the pinned, hash-checked lists exported from it:
# requirements/app.txt (what the server runs) and requirements/dev.txt (that plus the test,
# lint and deployment tools). chestx itself is then installed without dependencies.
EXPORT := $(BIN)/uv export --frozen --no-emit-project --no-header --quiet
EXPORT_app := --no-default-groups
EXPORT_dev := --all-groups
HEADER = \# Exported from uv.lock by "make lock", do not edit. Install: pip install --require-hashes -r $(1)

.PHONY: demo install install-dev test test-busy lint lint-python lint-ansible format lock check-lock bench release

define install_locked
	[ -x $(BIN)/python ] || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=25.1"
	$(PIP) install -q --require-hashes -r $<
	$(PIP) install -q --no-deps --no-build-isolation -e .
	! $(BIN)/chestx --version | grep "not installed" || \
	    { echo "the lock covers CPython 3.11-3.13; $(BIN)/python is not one of them"; exit 1; }
	touch $@
endef

$(VENV)/.chestx-app: requirements/app.txt pyproject.toml
	$(install_locked)

$(VENV)/.chestx-dev: requirements/dev.txt pyproject.toml
	$(install_locked)

## install: the application at the locked versions (requirements/app.txt)
install: $(VENV)/.chestx-app

## install-dev: that plus the test, lint and deployment tools (requirements/dev.txt)
install-dev: $(VENV)/.chestx-dev

## demo: install, then serve the shipped model at http://127.0.0.1:8000 (no AWS account needed)
demo: install
	$(BIN)/chestx serve --host 127.0.0.1 --port 8000

## test: install system and Python dependencies (apt needs root or sudo), lint, run every test
## (ansible-lint runs inside the tests: tests/deploy/test_deploy_lint.py)
test:
	bash .ci/install $(VENV)
	$(MAKE) lint-python
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

## test-busy: `make test` while stress-ng keeps both cores busy, with its time (not in CI;
## RUNS=3 for three consecutive runs)
test-busy:
	bash .ci/test-busy $(MAKE) test VENV=$(VENV)

## lint: every static check (the same tools .pre-commit-config.yaml runs before a commit)
lint: lint-python lint-ansible

lint-python: install-dev check-lock
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/mypy
	$(BIN)/pre-commit validate-config .pre-commit-config.yaml
	$(BIN)/ruff format --check $(PY_SOURCES)

lint-ansible: install-dev
	ANSIBLE_INVENTORY=inventory/static-example $(BIN)/ansible-lint --profile production \
	    --strict --offline site.yml playbooks roles inventory

## format: rewrite the Python sources in ruff's format (CI checks it)
format: install-dev
	$(BIN)/ruff format $(PY_SOURCES)

## lock: re-resolve uv.lock after editing pyproject.toml (keeps every pin that still fits;
## `make lock LOCK_ARGS=--upgrade` moves everything to the newest allowed) and re-export
lock: install-dev
	$(BIN)/uv lock $(LOCK_ARGS)
	{ echo '$(call HEADER,requirements/app.txt)'; $(EXPORT) $(EXPORT_app); } > requirements/app.txt
	{ echo '$(call HEADER,requirements/dev.txt)'; $(EXPORT) $(EXPORT_dev); } > requirements/dev.txt

## check-lock: fail if uv.lock is stale against pyproject.toml, or requirements/*.txt against it
check-lock: install-dev
	$(BIN)/uv lock --check
	diff -u <(tail -n +2 requirements/app.txt) <($(EXPORT) $(EXPORT_app))
	diff -u <(tail -n +2 requirements/dev.txt) <($(EXPORT) $(EXPORT_dev))

## release: tag the version in chestx/__init__.py as vX.Y.Z (see README, "Releases")
release: check-lock
	@v=$$($(BIN)/python -c 'import chestx; print(chestx.__version__)'); \
	grep -q "^## \[$$v\]" CHANGELOG.md || { echo "CHANGELOG.md has no section [$$v]"; exit 1; }; \
	git diff --quiet HEAD || { echo "uncommitted changes: commit them first"; exit 1; }; \
	git tag -a "v$$v" -m "chestx $$v" && echo "tagged v$$v; publish it: git push origin v$$v"

## bench: the core, serving and input-gate benchmarks (print Markdown tables)
bench: install-dev
	$(BIN)/python benchmarks/core_bench.py
	$(BIN)/python benchmarks/serve_bench.py
	$(BIN)/python benchmarks/gate_bench.py
