"""What the policy server, the rewarder service and the dashboard share.

``auth`` (API keys), ``lifecycle`` (starting / ready / failed and the /healthz body),
``metrics`` (prometheus_client, per-arm labels), ``limits``, ``logs`` (structured log lines),
``net`` (binding, busy ports, TLS contexts), ``http`` (aiohttp servers with all of the
above) and ``httpclient`` (httpx with one retry and backoff rule). The interface note is
/work/coord/api/service-kit.md in the team's workspace; the README's "Services" section is
the user's view.

This package module imports nothing: each submodule imports only what it needs, so that
`vla --help` stays fast.
"""
