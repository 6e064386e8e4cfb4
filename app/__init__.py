"""QuantDesk: browse, download and chat with GPTQ-quantized LLMs from the Hugging Face Hub.

The ``app`` package is the Qt-free core; all Qt code lives in ``app.ui``.
"""

__version__ = "0.1.0"
