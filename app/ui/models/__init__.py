"""Components of the Models page (the page itself is still :mod:`app.ui.models_page`)."""
