# RefundLens: `make demo` runs the analysis on bundled sample claims; `make test` runs the suite.
# `make setup` is idempotent: it installs missing Debian packages and (re)builds .venv when
# pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the project needs: a CJK font (rendering and OCR tests of Chinese marks);
# PostgreSQL (the test suite runs the service against a real one it starts itself);
# WeasyPrint's Pango and HarfBuzz subsetting (CJK PDFs in 0.1 s, not 8 s); poppler-utils
# (the PDF tests read the reports back with pdftotext/pdftoppm); Chromium (the console's
# browser tests drive it with Playwright; no browser is downloaded).
DEB_PACKAGES := fonts-wqy-microhei postgresql libpango-1.0-0 libpangoft2-1.0-0 \
	libharfbuzz-subset0 poppler-utils chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup debs demo serve test bench clean docs

setup: $(STAMP) debs

debs:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[ray,test]'
	# rapidocr-onnxruntime bundles the PP-OCRv4 models but depends on the GUI OpenCV, which
	# clashes with opencv-python-headless; its other dependencies are in pyproject.toml.
	$(PY) -m pip install -q --no-deps 'rapidocr-onnxruntime==1.4.4'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/refundlens demo --out demo-out

serve: setup
	$(VENV)/bin/refundlens serve --demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/run_all.py

docs: setup
	$(PY) -m refundlens.docs

clean:
	rm -rf demo-out .pytest_cache
