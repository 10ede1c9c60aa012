"""Numerical core: torch, numpy and scikit-learn only; never Dash or Plotly."""
