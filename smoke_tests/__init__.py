"""gemma4-serve's post-deploy smoke suite: httpx + pytest checks of an OpenAI-compatible server.

Run it with ``python -m smoke_tests --base-url URL`` (see ``smoke_tests.__main__`` and docs/smoke-tests.md).
Each check is one pytest test in a ``test_*.py`` module of this package; engine differences (vLLM, SGLang,
llama.cpp, any OpenAI-compatible server) live in :mod:`smoke_tests.servers` only.
"""

__version__ = "0.1.0"
