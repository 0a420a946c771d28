# t2i-course: every target creates .venv when it is missing and installs what it needs.
#   make test       the whole test suite (unit tests, notebooks with papermill and nbval, mirror check)
#   make demo       run the notebook series with default parameters into runs/<timestamp>/
#   make lab        JupyterLab on the notebooks, with the course's kernel
#   make lint       ruff on the library, the tests, the scripts and the notebooks
#   make notebooks  re-execute the committed notebooks in place, in order, from a clean data folder
#   make student    the students' checkout: student/notebooks/ (nbgrader) + student/t2ilib/
#   make grade      autograde classroom/submitted/* (smoke, isolated), feedback, grades CSVs

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

.PHONY: install test demo lab lint notebooks student grade clean

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

# Every committed output from one run: the series in order (02 writes the DAMSM that 07-10 load,
# 07 the SSA-GAN that 10 loads, 09 the SISGAN that 10 loads) in a clean data folder (ToyBirds is
# drawn again, every model trained again). NB_DATA=data reuses what data/ already holds.
NB_DATA ?= build/notebook_data
notebooks: $(STAMP)
	@if [ "$(NB_DATA)" = "build/notebook_data" ]; then rm -rf $(NB_DATA); fi
	T2I_DATA=$(abspath $(NB_DATA)) $(PY) -m t2ilib.course.notebooks execute $(NOTEBOOKS)
	$(PY) -m pytest -q tests/test_notebook_consistency.py

# nbgrader's generator (config: nbgrader_config.py): solutions and hidden tests removed,
# outputs cleared; it also records the assignment in classroom/gradebook.db for autograding.
# Then the students' library: student/t2ilib/ with every exercise body replaced by
# NotImplementedError, and the files to install it (cd student && make install).
# ASSIGN=02,07 stubs only those notebooks' exercises (the others keep their answers).
ASSIGN ?=
student: $(STAMP)
	$(VENV)/bin/nbgrader generate_assignment notebooks --force
	$(PY) -m t2ilib.course.student student --assign "$(ASSIGN)"
	@echo "students' checkout in student/: notebooks/ + t2ilib/ (README: For teachers)"

# Grade what was collected in classroom/submitted/<student>/notebooks/: nbgrader autograde in
# smoke mode, each student with a temporary data folder and TMPDIR of its own (removed after;
# data/ is never read or written), the time per student printed; then the feedback HTML
# (no hidden-test source, no stored output) and classroom/grades.csv + grades_by_exercise.csv.
# STUDENTS=ana,ben grades some; FULL=1 runs the notebooks' default settings (minutes a cell).
STUDENTS ?=
FULL ?=
grade: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m t2ilib.course.grade --students "$(STUDENTS)" $(if $(FULL),--full)

clean:
	rm -rf build .pytest_cache .ruff_cache
