"""The recipes: one folder each, ``<name>/recipe.py`` declaring ``STAGES`` and ``CONFIG``.

Installed as the package ``asr.recipes`` (see pyproject.toml), so ``asr run fsdd`` finds them
from a wheel as well as from a checkout.
"""
