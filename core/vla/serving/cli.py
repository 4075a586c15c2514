"""`vla serve`: serve a policy plugin's backend over the websocket protocol."""

from __future__ import annotations

import click

from vla.cli.common import EXIT_CONFIG_ERROR

DEFAULT_PORT = 8080


class ServeError(click.ClickException):
    """A problem with what was asked (unknown policy, bad settings, busy port): one line, exit 2."""

    exit_code = EXIT_CONFIG_ERROR


def _pairs(values, option: str) -> dict[str, str]:
    out = {}
    for value in values:
        foreign, sep, ours = value.partition("=")
        if not sep or not foreign.strip() or not ours.strip():
            raise ServeError(f"{option} expects CLIENT_KEY=VLA_KEY, got {value!r}")
        out[foreign.strip()] = ours.strip()
    return out


def client_key_map(loaded, adapter: str | None, pairs: dict[str, str]) -> dict[str, str]:
    """The key map for clients that send another project's keys: a policy plugin's client
    adapter, reversed (``--adapter pi0``: openpi's keys), plus explicit ``--key-map`` pairs."""
    key_map: dict[str, str] = {}
    if adapter:
        from vla.plugins import get_spec

        spec = get_spec("policies", adapter)
        if spec.client_adapter is None:
            raise ServeError(f"--adapter {adapter}: policy {adapter!r} has no client adapter to reverse")
        built = spec.build_client_adapter(loaded.plugin_config(spec))
        reverse = getattr(built, "server_key_map", None)
        if not callable(reverse):
            raise ServeError(f"--adapter {adapter}: its adapter maps requests but cannot be reversed (no server_key_map)")
        try:
            key_map.update(reverse())
        except ValueError as exc:
            raise ServeError(f"--adapter {adapter}: {exc}") from None
    key_map.update(pairs)
    return key_map


@click.command()
@click.option("--policy", "policy_name", required=True, help="Policy plugin to serve (see `vla plugins list`).")
@click.option("--host", default=None, help="Address to listen on, 0.0.0.0 in a container [default: policy_server.host from vla.yaml, else 127.0.0.1].")
@click.option("--port", default=None, type=click.IntRange(0, 65535), help=f"Port, 0 for any free one [default: policy_server.port, else {DEFAULT_PORT}].")
@click.option("--api-key", default=None, help="Require this key at the handshake [default: policy_server.api_key or $VLA_API_KEY].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override one policy setting (repeatable), e.g. --set path=outputs/act/pretrained_model.")
@click.option("--adapter", default=None, metavar="POLICY",
              help="Accept the keys of a foreign client: the reverse of that policy plugin's `vla run --adapter` map (e.g. pi0: openpi's observation/image, ..., prompt).")
@click.option("--key-map", "key_pairs", multiple=True, metavar="CLIENT_KEY=VLA_KEY",
              help="Rename one key clients send to vla's (repeatable), e.g. observation/image=observation.images.front.")
@click.option("--max-batch", type=click.IntRange(1, 1024), default=None, help="Most observations per model call (at most the policy's own limit) [default: the policy's].")
@click.option("--max-wait-ms", type=click.FloatRange(0, 1000), default=5.0, show_default=True, help="How long a batch waits for other arms' requests.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None, help="TLS certificate (PEM).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None, help="TLS private key (PEM).")
@click.option("--max-message-mb", type=click.FloatRange(0.001, 1024), default=16.0, show_default=True, help="Largest request accepted.")
@click.option("--max-connections", type=click.IntRange(1), default=256, show_default=True, help="Open connections beyond this are refused with 503.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True)
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None, help="Log lines as text or JSON [default: $VLA_LOG_FORMAT, else text].")
@click.pass_context
def serve(ctx, policy_name, host, port, api_key, overrides, adapter, key_pairs, max_batch, max_wait_ms, tls_cert, tls_key,
          max_message_mb, max_connections, log_level, log_format):
    """Serve a policy over WebSocket (msgpack, openpi-compatible), with /healthz and /metrics on the same port.

    Host, port and API key come from the flags, else from the lab config (`policy_server:` in
    vla.yaml, `.env`, $VLA_API_KEY); the start-up line says where each came from. The policy's
    settings are `plugins.<name>` in vla.yaml, with --set on top.
    """
    import asyncio
    import signal

    import attrs

    from vla.config import ConfigError, load_config
    from vla.plugins import PluginError, UnknownComponent, get_spec
    from vla.service.limits import ServerLimits
    from vla.service.logs import setup_logging
    from vla.service.net import PortInUse, server_ssl_context
    from vla.service.settings import parse_overrides, plugin_settings, server_endpoint

    setup_logging(log_level, log_format)
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    try:
        loaded = load_config((ctx.find_root().obj or {}).get("config_path"))
        spec = get_spec("policies", policy_name)
        config = plugin_settings(spec, loaded, parse_overrides(overrides))
        key_map = client_key_map(loaded, adapter, _pairs(key_pairs, "--key-map"))
    except (UnknownComponent, PluginError) as exc:
        raise ServeError(f"--policy {policy_name}: {exc.args[0] if exc.args else exc}") from None
    except (ConfigError, ValueError) as exc:
        raise ServeError(f"bad settings for policy {policy_name!r}: {exc}") from None
    endpoint = server_endpoint(ctx, loaded, "policy_server", default_port=DEFAULT_PORT)
    limits = attrs.evolve(ServerLimits(), max_connections=max_connections)
    try:
        ssl_context = server_ssl_context(tls_cert, tls_key) if tls_cert else None
    except (OSError, ValueError) as exc:
        raise ServeError(f"cannot load the TLS certificate and key: {exc}") from None

    from vla.serving.server import PolicyServer

    # The port is taken before the backend is built, so a busy port is one line at once.
    try:
        from vla.service.net import bind_listener

        sock = bind_listener(endpoint.host.value, endpoint.port.value, limits.backlog)
    except PortInUse as exc:
        raise ServeError(f"{exc} (port from {endpoint.port.source})") from None
    except OSError as exc:
        raise ServeError(str(exc)) from None
    try:
        backend = spec.build(config)
    except Exception as exc:  # a missing checkpoint, a wrong device, a missing extra: one line, not a traceback
        sock.close()
        raise ServeError(f"policy {policy_name!r} could not be built: {type(exc).__name__}: {exc}") from None

    async def main() -> int:
        server = PolicyServer(
            backend,
            host=endpoint.host.value,
            port=endpoint.port.value,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            api_key=endpoint.api_key.value,
            ssl=ssl_context,
            max_message_bytes=int(max_message_mb * 1024 * 1024),
            name=policy_name,
            limits=limits,
            key_map=key_map,
            sock=sock,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        if key_map:
            click.echo(f"vla serve: client keys mapped: {', '.join(f'{k} -> {v}' for k, v in key_map.items())}", err=True)
        click.echo(f"vla serve: policy {policy_name} on {server.url} ({endpoint.describe()})", err=True)
        await stop.wait()
        click.echo("vla serve: stopping", err=True)
        await server.stop()
        return 0

    ctx.exit(asyncio.run(main()))
