# t2i-course: every target creates .venv when it is missing and installs what it needs.
#   make test       the whole test suite (unit tests, notebooks with papermill and nbval, mirror check)
#   make demo       run the notebook series with default parameters into runs/<timestamp>/
#   make lab        JupyterLab on the notebooks, with the course's kernel
#   make lint       ruff on the library, the tests, the scripts and the notebooks
#   make notebooks  re-execute the committed notebooks in place (clean outputs, counts 1..n)
#   make student    the student version of the course (nbgrader) in student/notebooks/

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The course is tested with these; override for another platform, e.g.
#   make test TORCH="torch==2.9.1 torchvision==0.24.1"
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
# pytest-xdist workers; notebooks of one file stay on one worker (loadfile)
JOBS ?= 2
PYTEST_NBVAL := --nbval-lax --nbval-kernel-name python3 --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: install test demo lab lint notebooks student clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (t2i-course)" >/dev/null
	@touch $(STAMP)
	@echo "t2i-course environment ready in $(VENV)"

test: $(STAMP)
	$(PY) -m pytest -n $(JOBS) --dist loadfile tests notebooks $(PYTEST_NBVAL)

demo: $(STAMP)
	@$(PY) -m t2ilib.course.notebooks series --out runs/$$(date +%Y%m%d-%H%M%S) $(NOTEBOOKS)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

lint: $(STAMP)
	$(VENV)/bin/ruff check t2ilib tests data_scripts benchmarks notebooks

notebooks: $(STAMP)
	$(PY) -m t2ilib.course.notebooks execute $(NOTEBOOKS)

# nbgrader's generator (config: nbgrader_config.py): solutions and hidden tests removed,
# outputs cleared; it also records the assignment in classroom/gradebook.db for autograding
student: $(STAMP)
	$(VENV)/bin/nbgrader generate_assignment notebooks --force
	@echo "student version in student/notebooks/ (README: For teachers)"

clean:
	rm -rf build .pytest_cache .ruff_cache
