"""`python -m fakellm`: run the fake LLM server in the foreground for manual trials and benchmarks."""

from __future__ import annotations

import argparse

import uvicorn

from fakellm.config import REASONING_FIELDS, FakeConfig
from fakellm.runner import bind_socket
from fakellm.server import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fakellm", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999, help="0 picks a free port")
    parser.add_argument("--ttft-ms", type=float, default=200.0, help="delay before the first chunk")
    parser.add_argument("--gap-ms", type=float, default=20.0, help="delay between chunks")
    parser.add_argument("--tokens", type=int, default=50, help="text tokens per answer")
    parser.add_argument("--reasoning", type=int, default=0, help="reasoning tokens per answer")
    parser.add_argument("--chunk", type=int, default=4, help="characters per chunk of an exact reply")
    parser.add_argument("--reasoning-field", choices=REASONING_FIELDS, default="reasoning_content")
    parser.add_argument("--api-key", default=None, help="require this key (Bearer or x-api-key)")
    parser.add_argument("--keep-requests", type=int, default=50, help="bodies kept for /_fake/requests")
    parser.add_argument("--access-log", action="store_true", help="log one line per request")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    config = FakeConfig(
        ttft_ms=args.ttft_ms,
        gap_ms=args.gap_ms,
        tokens=args.tokens,
        reasoning=args.reasoning,
        chunk=args.chunk,
        reasoning_field=args.reasoning_field,
        required_api_key=args.api_key,
        keep_requests=args.keep_requests,
    )
    sock = bind_socket(args.host, args.port)
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    root = f"http://{host}:{port}"
    print(f"fakellm: OpenAI base URL {root}/v1 (Anthropic: {root})", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            log_level=args.log_level,
            access_log=args.access_log,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=2,
            backlog=4096,
        )
    )
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
