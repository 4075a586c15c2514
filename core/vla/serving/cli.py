"""`vla serve`: serve a policy plugin's backend over the websocket protocol."""

from __future__ import annotations

import click


@click.command()
@click.option("--policy", "policy_name", required=True, help="Policy plugin to serve (see `vla plugins list`).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 in a container).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free port).")
@click.option("--max-batch", type=click.IntRange(1, 1024), default=None, help="Most observations per model call (at most the policy's own limit) [default: the policy's].")
@click.option("--max-wait-ms", type=click.FloatRange(0, 1000), default=5.0, show_default=True, help="How long a batch waits for other arms' requests.")
@click.option("--api-key", envvar="VLA_API_KEY", default=None, help="Require this key at the handshake [env: VLA_API_KEY].")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None, help="TLS certificate (PEM).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None, help="TLS private key (PEM).")
@click.option("--max-message-mb", type=click.FloatRange(0.001, 1024), default=16.0, show_default=True, help="Largest request accepted.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True)
@click.pass_context
def serve(ctx, policy_name, host, port, max_batch, max_wait_ms, api_key, tls_cert, tls_key, max_message_mb, log_level):
    """Serve a policy over WebSocket (msgpack, openpi-compatible), with /healthz and /metrics on the same port.

    The policy's settings come from the `plugins.<name>` section of the lab config (vla.yaml).
    """
    import asyncio
    import logging
    import signal

    from vla.config import ConfigError, load_config
    from vla.plugins import PluginError, UnknownComponent, get_spec
    from vla.serving.server import PolicyServer, make_ssl_context

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    try:
        loaded = load_config((ctx.obj or {}).get("config_path"))
        spec = get_spec("policies", policy_name)
        config = loaded.plugin_config(spec)
    except (UnknownComponent, PluginError) as exc:
        raise click.UsageError(str(exc)) from None
    except ConfigError as exc:
        click.echo(f"vla serve: config error: {exc}", err=True)
        ctx.exit(2)
    api_key = api_key or loaded.config.policy_server.api_key
    ssl_context = make_ssl_context(tls_cert, tls_key) if tls_cert else None
    backend = spec.build(config)

    async def main() -> int:
        server = PolicyServer(
            backend,
            host=host,
            port=port,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            api_key=api_key,
            ssl=ssl_context,
            max_message_bytes=int(max_message_mb * 1024 * 1024),
            name=policy_name,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        click.echo(f"vla serve: policy {policy_name} on {server.url} (auth: {'api key' if api_key else 'none'})", err=True)
        await stop.wait()
        click.echo("vla serve: stopping", err=True)
        await server.stop()
        return 0

    ctx.exit(asyncio.run(main()))
