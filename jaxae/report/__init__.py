"""`jaxae report`: the lesson's questions answered with numbers and pictures (see build.py)."""

from jaxae.report.build import build
from jaxae.report.plan import BUDGETS

__all__ = ["BUDGETS", "build"]
