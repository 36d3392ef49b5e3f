"""A fake LLM server speaking the OpenAI (vLLM/gpt-oss) and Anthropic wire formats.

It is the project's only fake: tests and benchmarks point the real provider adapters at it.
Behaviour is steered per request by a `fake: {json}` line in the last user message (see
`fakellm.scenario`) and server-wide by `FakeConfig` / POST /_fake/config (see `fakellm.server`).
"""

from fakellm.config import FailSpec, FakeConfig
from fakellm.runner import FakeLLM, run_in_thread
from fakellm.server import create_app
from fakellm.state import Stats

__all__ = ["FailSpec", "FakeConfig", "FakeLLM", "Stats", "create_app", "run_in_thread"]
