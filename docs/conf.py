"""Sphinx configuration of the skood documentation.

Build: ``sphinx-build -W --keep-going -n -b html docs docs/_build/html`` (what ``.ci/docs``
runs). The gallery executes every script in ``examples/`` at the smoke budget; the
benchmark pages are generated at build time from ``benchmarks/results/leaderboards/``
(``docs/_generate.py``), so no number in the docs is typed by hand.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS))

import _generate  # noqa: E402  (docs/_generate.py: the benchmark pages)

import skood  # noqa: E402

# The gallery examples read this variable and shrink their data and epochs to a
# smoke budget, so the whole gallery runs in the docs build within CI's time.
os.environ.setdefault("SKOOD_EXAMPLES_SMOKE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "agg")

project = "skood"
author = "the skood developers"
copyright = "the skood developers, BSD-3-Clause"  # noqa: A001
version = release = skood.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
    "_skood_ext",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "auto_examples/*.json",
    "auto_examples/*.md5",
    "auto_examples/*.pickle",
    "sg_execution_times.rst",
    "**/sg_execution_times.rst",
    "snippets",
]
# The benchmark pages' Markdown files are generated, and H6's leaderboard Markdown is read
# by _generate.py, not by Sphinx directly.
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

# ---------------------------------------------------------------- autodoc / numpydoc
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # numpydoc's Parameters section says it; signatures stay short
numpydoc_show_class_members = False  # the class template lists the methods with autodoc
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# ---------------------------------------------------------------- cross-references
# Nitpicky: every internal reference must resolve. intersphinx has no network at build
# time, so the mapping is empty and the external types skood's docstrings name are
# listed here instead: they belong to numpy, torch, scikit-learn, skorch and PyOD,
# whose inventories are not available offline.
nitpicky = True
intersphinx_mapping: dict = {}
nitpick_ignore = [
    ("py:class", "numpy.ndarray"),
    ("py:class", "numpy.random.RandomState"),
    ("py:class", "torch.nn.Module"),
    ("py:class", "torch.nn.modules.module.Module"),
    ("py:class", "torch.Tensor"),
    ("py:class", "torch.Generator"),
    ("py:func", "torch.save"),
    ("py:func", "torch.load"),
    ("py:class", "sklearn.base.BaseEstimator"),
    ("py:class", "sklearn.base.OutlierMixin"),
    ("py:class", "sklearn.model_selection.GridSearchCV"),
    ("py:class", "sklearn.pipeline.Pipeline"),
    ("py:class", "sklearn.exceptions.ConvergenceWarning"),
    ("py:class", "pyod.models.base.BaseDetector"),
    ("py:class", "ValueError"),
    ("py:class", "UserWarning"),
    ("py:exc", "ValueError"),
]
nitpick_ignore_regex = [
    # external libraries (no offline inventory)
    ("py:.*", r"(numpy|np|torch|sklearn|skorch|pyod|scipy|joblib|dask)\..*"),
]

# ---------------------------------------------------------------- gallery
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # every script in examples/ runs in the build (each ends in a figure)
    "filename_pattern": r"\.py$",
    "ignore_pattern": r"(__init__|_helpers?|conftest)\.py$",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "remove_config_comments": True,
    "download_all_examples": False,
    "plot_gallery": "True",
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("skood",),
    "backreferences_dir": "gen_modules/backreferences",
    "reference_url": {"skood": None},
    "min_reported_time": 10,
    "show_memory": False,
}

# SKOOD_DOCS_GALLERY=0 leaves the gallery out (a quick build while editing pages; CI
# never sets it)
if os.environ.get("SKOOD_DOCS_GALLERY", "1") == "0":
    extensions.remove("sphinx_gallery.gen_gallery")
    exclude_patterns.append("auto_examples")
    minigallery_stub = True
else:
    minigallery_stub = False

# ---------------------------------------------------------------- HTML
html_theme = "pydata_sphinx_theme"
html_title = f"skood {release}"
html_static_path = ["_static"]
html_css_files = ["skood.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_show_sourcelink = False
html_context = {"default_mode": "light"}


def _skip_foreign_member(app, what, name, obj, skip, options):
    """Document the members skood defines (its own and those of its base classes), not
    those inherited from scikit-learn, PyOD, torch or Python, whose docstrings refer to
    their own documentation."""
    if what in ("class", "exception"):
        func = getattr(obj, "__func__", None) or getattr(obj, "fget", None) or obj
        mod = getattr(func, "__module__", None)
        if callable(func) or isinstance(obj, property):
            if not (mod or "").startswith("skood"):
                return True
    return None


def setup(app):  # noqa: D103
    app.connect("autodoc-skip-member", _skip_foreign_member)
    app.connect("builder-inited", lambda app: _generate.generate(ROOT, DOCS))
    if minigallery_stub:
        from docutils.parsers.rst import Directive, directives

        class _NoGallery(Directive):
            has_content = True
            optional_arguments = 1
            final_argument_whitespace = True
            option_spec = {"add-heading": directives.unchanged}

            def run(self):
                return []

        app.add_directive("minigallery", _NoGallery)
