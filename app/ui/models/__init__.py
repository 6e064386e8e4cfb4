"""The Models page (:mod:`app.ui.models.page`) and its components, one job per module."""
