# Two entry points (README): `make demo` and `make test`. Each creates .venv with the pinned torch.
PY        ?= python3
VENV      ?= .venv
PIP        = $(VENV)/bin/pip
PYTHON     = $(VENV)/bin/python
TORCH_PIN  = torch==2.14.1 torchvision==0.29.1
DEMO_OUT  ?= output/demo

.PHONY: setup demo demo-quick test test-fast clean

# FastReID 1.4.0 goes in last, with --no-deps: it pins torch==1.13.1 / torchvision==0.14.1, which cannot sit
# beside torch 2 (inclr_fastreid.compat runs it there). Once it is in, every pip install ends with pip's red
# "ERROR: ... fastreid 1.4.0 requires torch==1.13.1", so the installs before it pass --no-warn-conflicts
# (a rerun, after setup.py changed, installs over it) and `pip check` afterwards may report those two pins
# and nothing else. setuptools >= 70.1 builds wheels itself: tests/e2e/test_package.py builds one offline.
$(VENV)/.installed: setup.py
	$(PY) -m venv $(VENV)
	$(PIP) install -q --no-warn-conflicts --upgrade pip 'setuptools>=70.1'
	$(PIP) install -q --no-warn-conflicts $(TORCH_PIN)
	$(PIP) install -q --no-warn-conflicts -e '.[test]' $(TORCH_PIN)
	$(PIP) install -q --no-deps fastreid==1.4.0
	@! $(PIP) check | grep -v -E '^fastreid 1\.4\.0 .*torch(vision)?==' || \
		{ echo "pip check: the requirements above are broken (rerun: $(PIP) check)" >&2; exit 1; }
	@$(PYTHON) -c "import importlib.metadata as m, torch, inclr_fastreid; print('installed: inclr-fastreid', inclr_fastreid.__version__, 'imports FastReID', m.version('fastreid'), 'on torch', torch.__version__, '(FastReID went in with --no-deps: its torch==1.13.1 pin is skipped on purpose, see README)')"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PYTHON) tools/run_demo.py --output-dir $(DEMO_OUT)

demo-quick: setup
	$(PYTHON) tools/run_demo.py --quick --output-dir $(DEMO_OUT)-quick

test: setup
	$(PYTHON) -m pytest -q tests

# the edit loop: everything but the end-to-end runs (the tests under tests/e2e/, marked e2e by tests/conftest.py)
test-fast: setup
	$(PYTHON) -m pytest -q -m "not e2e" tests

clean:
	rm -rf $(VENV) output
