# hopnhat — the two commands of the README:
#   make demo   runs the main job against the lab (installs what it needs first)
#   make test   passes the tests (installs what it needs first); .ci/run calls exactly this
# Both are idempotent and quick the second time (stamps under .hopnhat/stamps).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOPNHAT := $(VENV)/bin/hopnhat
STAMPS := .hopnhat/stamps
# prometheus: for its promtool, which checks and unit-tests the alert rules (hopnhat alerts);
# postgresql-15, mariadb-server and their clients: the engines lab guests run (each guest has
# its own empty engine folders, so the clusters and data directory the packages make on this
# machine, running or not, are never a guest's)
APT_PACKAGES := tzdata restic openssh-server openssh-client nftables \
	sqlite3 util-linux iproute2 systemd python3-venv chromium prometheus \
	postgresql-15 postgresql-client-15 mariadb-server mariadb-client
PYTEST_ARGS ?=
# make test runs the tests on two pytest-xdist workers, each with a lab of its own (the
# integration tests wait on hosts much of the time: alone they keep two cores 60 % busy)
TEST_WORKERS ?= 2
# make fuzz: how long the estate loader's fuzzer generates examples (then it shrinks what it
# found and stops; one process)
FUZZ_SECONDS ?= 60

.PHONY: demo test deps apt venv bytecode lab-build lint unit integration e2e fuzz bench clean lab-down

demo: deps
	bash scripts/demo.sh

test: deps lint
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# the virtualenv's install and the Go build (minutes when cold) run side by side
deps: apt
	@$(MAKE) --no-print-directory -j2 venv lab-build
	@$(MAKE) --no-print-directory bytecode

apt: $(STAMPS)/apt
$(STAMPS)/apt: Makefile
	@mkdir -p -m 700 .hopnhat && mkdir -p $(STAMPS)
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@touch $@

venv: $(STAMPS)/venv
$(STAMPS)/venv: pyproject.toml | $(STAMPS)/apt
	@mkdir -p -m 700 .hopnhat && mkdir -p $(STAMPS)
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# hopnhat is installed editable, so pip compiles none of its modules; compile them here (only
# what changed), as an installed package would be: every command starts ~50 ms sooner, and
# more where PYTHONDONTWRITEBYTECODE keeps Python from caching them itself
bytecode: venv
	@$(PY) -m compileall -q orchestrator

# the lab's Go parts (vcsim, restic, rest-server) from the pinned modules in orchestrator/lab/go
lab-build: $(STAMPS)/apt
	$(PYTHON) -m orchestrator.lab.gobuild .hopnhat/lab

# ruff, mypy, import-linter's contracts (pyproject.toml: the layers import downwards only,
# nothing imports the CLI), the alert rules, ansible-lint
lint: venv
	$(PY) -m ruff check orchestrator tests bench
	$(PY) -m mypy
	@mkdir -p -m 700 .hopnhat
	$(VENV)/bin/lint-imports --cache-dir .hopnhat/import-linter
	$(HOPNHAT) alerts --print > .hopnhat/alerts.yml
	promtool check rules .hopnhat/alerts.yml
	$(VENV)/bin/ansible-lint --profile production -c playbooks/.ansible-lint playbooks/

unit: deps
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: deps
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

e2e: deps
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

# the estate loader's fuzzer (tests/fuzz/fuzz_estate.py): every estate must load or be refused
# with named problems; prints the examples run and each distinct failure with a minimal
# reproducer (saved in .hopnhat/fuzz/findings), exit 1 when it found one
fuzz: venv
	$(PY) tests/fuzz/fuzz_estate.py --seconds $(FUZZ_SECONDS)

lab-down:
	$(HOPNHAT) lab down

clean: lab-down
	rm -rf $(VENV) .hopnhat
