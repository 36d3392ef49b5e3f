"""The OpenAI-compatible /v1 API: our agents and models for any OpenAI client (the openai SDK,
Big-AGI, editors), authenticated by personal API keys (accounts.api_keys).

A request becomes a turn of the same pipeline the chat page uses (conversations.runner, through
the broker, with asgi.ApiSink as its in-process sink): stored as a conversation with source API
before the model is called, its agent's MCP tools run on the server within the request, the
client's own tools handed back as `tool_calls`.

    requests.py   the body, checked, as a typed CompletionRequest (400s)
    catalog.py    which model ids a person may use, and the agent behind each
    storing.py    the one action: store the request and plan its turn
    chunks.py     OpenAI's response and chunk shapes, built from our events
    errors.py     OpenAI's error shape, and our failures mapped to its statuses
    asgi.py       the thin HTTP adapters, an ASGI app of their own (it says why)
    stream_writer.py  chunks straight onto the socket under Daphne
"""
