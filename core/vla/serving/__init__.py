"""The policy server (`vla serve`): websocket protocol, batching, /healthz and /metrics on one port."""
