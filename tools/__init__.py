"""Tools that make goldens, notebook data, figures and reports. Run each from the repository root
as a module, e.g. ``python -m tools.make_goldens``; ``--help`` says what it does."""
