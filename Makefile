# Two entry points (README): `make demo` and `make test`. Each creates .venv with the pinned torch.
PY        ?= python3
VENV      ?= .venv
PIP        = $(VENV)/bin/pip
PYTHON     = $(VENV)/bin/python
TORCH_PIN  = torch==2.14.1 torchvision==0.29.1
DEMO_OUT  ?= output/demo

.PHONY: setup demo demo-quick test clean

$(VENV)/.installed: setup.py
	$(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PIN)
	$(PIP) install -q --no-deps fastreid==1.4.0
	$(PIP) install -q -e '.[test]' $(TORCH_PIN)
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PYTHON) tools/run_demo.py --output-dir $(DEMO_OUT)

demo-quick: setup
	$(PYTHON) tools/run_demo.py --quick --output-dir $(DEMO_OUT)-quick

test: setup
	$(PYTHON) -m pytest -q tests

clean:
	rm -rf $(VENV) output
