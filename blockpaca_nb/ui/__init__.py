"""The notebook dashboard: anywidget data panels and ipywidgets controls, fed by one pump thread."""

from .dashboard import Dashboard

__all__ = ["Dashboard"]
