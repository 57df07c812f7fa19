"""Hypothesis profiles: HYPOTHESIS_PROFILE=ci (CI, the default budget, with a
printed reproduction blob) or HYPOTHESIS_PROFILE=deep (manual runs: 10x the
examples; tests/test_fuzz.py scales its per-property budgets by it)."""

import os

from hypothesis import settings

settings.register_profile("ci", max_examples=100, print_blob=True)
settings.register_profile("deep", max_examples=1000, print_blob=True)
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])
