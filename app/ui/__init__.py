"""All Qt code: widgets, item models and workers. Nothing outside this package imports Qt."""
