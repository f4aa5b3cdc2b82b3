"""blockpaca_nb: Jupyter-first interactive paper trading on Alpaca."""

__version__ = "0.2.0.dev0"
