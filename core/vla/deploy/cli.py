"""`vla up`, `vla down`, `vla ps`, `vla logs`, `vla build`: the GPU host's services under compose.

`vla up` writes the compose project to `.vla/compose.yaml` beside the lab config (or in the
working directory) and the other commands find the project through that file, falling back
to `deploy.project` from the lab config.

`vla down` removes the project's containers and network and keeps its volumes, the model
cache above all (weights take long to download again); `--volumes` removes those too.

Before anything starts, `vla up` checks what would otherwise fail minutes later or never say
why: a published port that something else holds, services published beyond localhost without
an API key (refused unless `--insecure`), images that are neither here nor buildable, and
GPUs shared beyond their memory (a warning).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import attrs
import click

from vla.cli.common import EXIT_CONFIG_ERROR, lab_config
from vla.deploy.errors import DeployError

STATE_DIR = ".vla"
COMPOSE_NAME = "compose.yaml"
DRY_RUN_NAME = "compose.dry-run.yaml"


class DeployFailed(click.ClickException):
    exit_code = 1


class DeployUsageError(click.ClickException):
    """Bad input (an unknown plugin, a bad plugin config): exits 2 like a bad lab config."""

    exit_code = EXIT_CONFIG_ERROR


def _state_dir(loaded) -> Path:
    return loaded.base_dir / STATE_DIR


def _compose_file(loaded) -> Path:
    return _state_dir(loaded) / COMPOSE_NAME


def _project(loaded) -> tuple[str, Path | None]:
    """The project name and compose file of the last `vla up` here, else the config's project."""
    path = _compose_file(loaded)
    if path.is_file():
        import yaml

        try:
            name = (yaml.safe_load(path.read_text()) or {}).get("name")
        except yaml.YAMLError:
            name = None
        if name:
            return str(name), path
    return loaded.config.deploy.project, None


def _resolve(loaded, policy, rewarder, trainer):
    """Look the named plugins up and check their configs, before anything starts."""
    from vla.config import ConfigError
    from vla.deploy.compose import ROLE_KINDS, Selection
    from vla.plugins import PluginError, UnknownComponent, get_registry

    deploy = loaded.config.deploy
    wanted = {
        "policy": policy or deploy.policy,
        "rewarder": rewarder or deploy.rewarder,
        "trainer": trainer or deploy.trainer,
    }
    wanted = {role: name for role, name in wanted.items() if name}
    if not wanted:
        raise DeployUsageError("nothing to start: give --policy and/or --rewarder (or set deploy.policy / deploy.rewarder in vla.yaml)")
    registry = get_registry()
    components, distributions = {}, {}
    for role, name in wanted.items():
        try:
            registered = registry.get(ROLE_KINDS[role], name)
        except (UnknownComponent, PluginError) as exc:
            raise DeployUsageError(f"--{role} {name}: {exc.args[0] if exc.args else exc}") from None
        try:
            loaded.plugin_config(registered.spec)
            spec = registered.spec.with_profile(loaded.plugin_profile(registered.spec))
        except ConfigError as exc:
            raise DeployUsageError(f"bad configuration for {role} {name!r}: {exc}") from None
        components[role] = spec  # with the lab's service profile (plugins.<name>.profile) applied
        distributions[role] = (registered.distribution, registered.version)
    return registry, Selection(components, distributions)


LOCAL_BINDS = ("127.0.0.1", "::1", "localhost")
ROLE_KEYS = {"policy": "policy_server", "rewarder": "rewarder"}


def _is_local(bind: str) -> bool:
    return bind in LOCAL_BINDS or bind.startswith("127.")


def _set_pairs(values, option: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise DeployUsageError(f"{option} expects KEY=VALUE, got {value!r}")
        pairs.append((key.strip(), text))
    return pairs


def _check_settings(loaded, selection, role_pairs: dict[str, list[tuple[str, str]]]) -> None:
    """`--set` values must fit the plugin's config class, as in `vla serve` (checked before anything starts)."""
    from vla.config import ConfigError
    from vla.service.settings import parse_overrides, plugin_settings

    for role, pairs in role_pairs.items():
        if not pairs:
            continue
        component = selection.components.get(role)
        if component is None:
            raise DeployUsageError(f"--{'' if role == 'policy' else role + '-'}set was given, but no {role} is deployed")
        try:
            plugin_settings(component, loaded, parse_overrides(f"{k}={v}" for k, v in pairs))
        except (ConfigError, ValueError) as exc:
            raise DeployUsageError(f"bad --set for {role} {component.name!r}: {exc}") from None


def _key_problems(loaded, plan, bind: str) -> list[str]:
    """Published services that would take requests from anyone who can reach ``bind``."""
    if _is_local(bind):
        return []
    problems = []
    for s in plan.services:
        section = ROLE_KEYS.get(s.role)
        if s.compose_name in plan.host_ports and section and not getattr(loaded.config, section).api_key:
            problems.append(f"{s.compose_name} (port {plan.host_ports[s.compose_name]}, no {section}.api_key)")
    return problems


def _secrets_for_compose(loaded) -> dict[str, str]:
    """VLA_API_KEY for compose to hand to the containers when it came from a .env or the
    environment (a key written in vla.yaml reaches them through the mounted file)."""
    config_file = str(loaded.path) if loaded.path else None
    for section in ("policy_server", "rewarder"):
        source = loaded.sources.get(f"{section}.api_key", "default")
        value = getattr(loaded.config, section).api_key
        if value and source not in ("default", config_file):
            return {"VLA_API_KEY": value}
    return {}


def _busy_ports(plan, bind: str, project: str) -> list[str]:
    """Published ports that something other than this project's own containers holds."""
    from vla.service.net import port_free

    busy = [(name, port) for name, port in plan.host_ports.items() if not port_free(bind, port)]
    if not busy:
        return []
    ours: set[int] = set()
    try:
        from vla.deploy import engine

        client = engine.docker_client()
        for container in client.containers.list(filters={"label": f"com.docker.compose.project={project}"}):
            for bindings in ((container.attrs.get("NetworkSettings") or {}).get("Ports") or {}).values():
                ours.update(int(b["HostPort"]) for b in bindings or [] if b.get("HostPort"))
    except DeployError:
        pass
    return [f"port {port} ({name}) on {bind}" for name, port in busy if port not in ours]


def _wait_timeout(plan) -> tuple[int, str]:
    """Long enough for the slowest service: its start period, then its retries, plus a minute to start."""
    checks = [(s.spec.healthcheck.wait_s, s.compose_name) for s in plan.services if s.spec.healthcheck is not None]
    if not checks:
        return 120, "no health checks"
    seconds, name = max(checks)
    return int(seconds) + 60, f"{name}'s start period {plan.service(name).spec.healthcheck.start_period_s:g}s and retries"


def _display_host(bind: str) -> str:
    if bind in ("0.0.0.0", "::", ""):
        return socket.gethostname()
    return bind


@click.command()
@click.option("--policy", help="Policy plugin to serve (default: deploy.policy).")
@click.option("--rewarder", help="Rewarder plugin to serve (default: deploy.rewarder).")
@click.option("--trainer", help="Trainer plugin to run (default: deploy.trainer).")
@click.option("--gpus", help="GPUs for the GPU services: 'all' or device ids like '0,1' (default: deploy.gpus).")
@click.option("--bind", default=None, help="Host address the ports are published on (default: $VLA_BIND_ADDRESS, then deploy.bind_address).")
@click.option("--set", "policy_sets", multiple=True, metavar="KEY=VALUE",
              help="A policy setting (repeatable), passed to its `vla serve`; a host path is mounted read-only, e.g. --set path=outputs/act/pretrained_model.")
@click.option("--rewarder-set", "rewarder_sets", multiple=True, metavar="KEY=VALUE", help="A rewarder setting (repeatable), likewise.")
@click.option("--insecure", is_flag=True, help="Publish beyond localhost even without an API key.")
@click.option("--dry-run", is_flag=True, help="Print the compose file (with --target k8s: the manifests) and start nothing.")
@click.option("--build/--no-build", default=True, show_default=True, help="Build missing vla images and pull missing upstream ones first.")
@click.option("--wait-timeout", default=None, type=click.IntRange(1), help="Seconds to wait for every service to be healthy [default: the longest start period and retries, plus 60].")
@click.option("--target", "deploy_target", type=click.Choice(["compose", "k8s"]), default="compose", show_default=True,
              help="compose: start the services here; k8s: write Kubernetes manifests from the same specs.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="k8s: folder for the manifests (default: .vla/k8s).")
@click.option("--replicas", multiple=True, metavar="SERVICE=N", help="k8s: pods for a service, e.g. policy=2 (default: deploy.kubernetes.replicas).")
@click.pass_context
def up(ctx, policy, rewarder, trainer, gpus, bind, policy_sets, rewarder_sets, insecure, dry_run, build, wait_timeout,
       deploy_target, out, replicas):
    """Start the policy / rewarder services with docker compose and wait until they are healthy.

    The compose file goes to .vla/compose.yaml; `--dry-run` prints it (checked with
    `docker compose config` when compose is installed, kept as .vla/compose.dry-run.yaml) and
    starts nothing. A port another program holds, or a service published beyond localhost
    without an API key, stops it before anything starts. `--target k8s` writes Kubernetes
    manifests to apply with `kubectl apply -k DIR` instead (`--dry-run` prints them).
    """
    import yaml

    from vla.deploy import compose, engine

    loaded = lab_config(ctx)
    registry, selection = _resolve(loaded, policy, rewarder, trainer)
    role_pairs = {"policy": _set_pairs(policy_sets, "--set"), "rewarder": _set_pairs(rewarder_sets, "--rewarder-set")}
    _check_settings(loaded, selection, role_pairs)
    if deploy_target == "k8s":
        from vla.deploy.kubernetes_cli import up_kubernetes

        return up_kubernetes(ctx, loaded, selection, out=out, replicas=replicas, dry_run=dry_run,
                             role_pairs=role_pairs, insecure=insecure)
    if out or replicas:
        raise DeployUsageError("--out and --replicas are for --target k8s")
    deploy = loaded.config.deploy
    bind = bind or os.environ.get("VLA_BIND_ADDRESS") or deploy.bind_address
    overrides, host_mounts = {}, {}
    for role, pairs in role_pairs.items():
        overrides[role], host_mounts[role] = compose.host_path_overrides(pairs, Path.cwd())
        for source, target in host_mounts[role]:
            click.echo(f"{role}: mounting {source} read-only at {target}", err=True)
    secrets = _secrets_for_compose(loaded)
    try:
        plan = compose.make_plan(selection, deploy)
        doc = compose.compose_dict(
            plan, deploy, selection, gpus=gpus, bind=bind,
            lab_config_path=str(loaded.path.resolve()) if loaded.path else None,
            environ={**os.environ, **secrets}, overrides=overrides, host_mounts=host_mounts,
        )
    except DeployError as exc:
        raise DeployUsageError(str(exc)) from None
    unguarded = _key_problems(loaded, plan, bind)
    if unguarded and not insecure:
        why = (f"publish {', '.join(unguarded)} on {bind} without an API key: anyone who can reach this host "
               f"could drive the arms. Set VLA_API_KEY (in the lab's .env or the environment) or "
               f"policy_server.api_key / rewarder.api_key in vla.yaml; or publish on 127.0.0.1 with --bind; "
               f"or pass --insecure")
        if not dry_run:  # a dry run starts nothing; it shows what `vla up` would refuse
            raise DeployUsageError(f"refusing to {why}")
        click.echo(f"warning: `vla up` would refuse to {why}", err=True)
    for warning in compose.gpu_sharing_warnings(plan, gpus or deploy.gpus):
        click.echo(f"warning: {warning}", err=True)
    if wait_timeout is None:
        wait_timeout, why = _wait_timeout(plan)
    else:
        why = "--wait-timeout"
    text = "# written by `vla up`; regenerate rather than edit\n" + yaml.safe_dump(doc, sort_keys=False)
    path = _compose_file(loaded)
    if dry_run:  # never overwrite the file of a project that may be running
        path = path.with_name(DRY_RUN_NAME)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)

    try:
        if dry_run:
            click.echo(text, nl=False)
            if engine.compose_available():
                engine.validate_compose(path, plan.project)
                click.echo(f"# {path}: accepted by `docker compose config`", err=True)
            else:
                click.echo(f"# {path}: not validated (Docker Compose v2 is not installed)", err=True)
            return
        busy = _busy_ports(plan, bind, plan.project)
        if busy:
            raise DeployError(
                f"{'; '.join(busy)} {'is' if len(busy) == 1 else 'are'} already in use by another program; "
                f"stop it, or choose other ports with deploy.policy_port / deploy.rewarder_port in vla.yaml"
            )
        engine.validate_compose(path, plan.project)
        client = engine.docker_client()
        if plan.gpu_services:
            engine.require_nvidia(client, [s.compose_name for s in plan.gpu_services])
        _fetch_missing(client, registry, selection, plan, _state_dir(loaded), build)
        click.echo(f"starting {plan.project}: {', '.join(s.compose_name for s in plan.services)} "
                   f"(waiting up to {wait_timeout}s: {why})", err=True)
        start = time.monotonic()
        result = engine.run_compose(plan.project, path, "up", "-d", "--wait", "--wait-timeout", str(wait_timeout),
                                    "--remove-orphans", check=False, env={**os.environ, **secrets})
        if result.returncode != 0:
            raise DeployError(_why_not_healthy(client, plan, bind, wait_timeout, time.monotonic() - start))
    except DeployError as exc:
        raise DeployFailed(str(exc)) from None
    click.echo(f"healthy after {time.monotonic() - start:.1f}s", err=True)
    for name, url in compose.service_urls(plan, _display_host(bind)).items():
        click.echo(f"{name:<10} {url}")


def _fetch_missing(client, registry, selection, plan, state_dir: Path, build: bool) -> None:
    """Build the missing vla images and pull the missing upstream ones (compose never pulls)."""
    from vla.deploy import images
    from vla.deploy.compose import ROLE_KINDS

    # the selection's specs carry the lab's service profile, the registry's do not
    wanted = [attrs.evolve(registry.get(ROLE_KINDS[role], spec.name), spec=spec) for role, spec in selection.components.items()]
    missing = [b for b in images.builds_for(wanted, registry) if not images.image_is_current(client, b)]
    upstream = sorted({s.spec.image for s in plan.services if s.spec.build_context is None})
    absent = [image for image in upstream if not images.image_exists(client, image)]
    if not build and (missing or absent):
        names = [b.image for b in missing] + absent
        raise DeployError(f"image(s) {', '.join(names)} are not on this host and --no-build was given; "
                          f"run `vla build` (it builds vla's images and pulls pinned upstream ones)")
    if missing:
        click.echo(f"building missing or outdated image(s): {', '.join(b.image for b in missing)}", err=True)
        images.run_builds(
            missing, base_image=os.environ.get("VLA_BASE_IMAGE"), ca_bundle=images.default_ca_bundle(),
            log_dir=state_dir / "build",
        )
    for image in absent:
        images.pull(image)


def _last_log_line(client, container_name: str) -> str:
    """The container's last non-empty log line (the one-line error of a `vla serve` that exited)."""
    try:
        text = client.containers.get(container_name).logs(tail=20).decode("utf-8", "replace")
    except Exception:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _why_not_healthy(client, plan, bind: str, wait_timeout: int, waited: float) -> str:
    """The failure of `docker compose up --wait`, named: each service that is not healthy, and why."""
    from vla.deploy.compose import CACHE_INIT

    rows = {r["service"]: r for r in service_states(client, plan.project)}
    lines = []
    for s in plan.services:
        row = rows.get(s.compose_name)
        if row is None:
            lines.append(f"{s.compose_name}: not created")
        elif row["state"] != "running" or row["health"] not in ("healthy", "none") or row["restarts"]:
            exit_code = row.get("exit_code")
            detail = f"{row['state']}" + (f" (exit {exit_code})" if row["state"] == "exited" else "")
            if row["health"] not in ("none", ""):
                detail += f", health {row['health']}"
            if row["restarts"]:
                detail += f", restarted {row['restarts']} time(s)"
            last = _last_log_line(client, row["container"])
            lines.append(f"{s.compose_name}: {detail}" + (f"; its log ends: {last}" if last else ""))
    init = rows.get(CACHE_INIT)
    if init is not None and init.get("exit_code") not in (0, None):
        lines.append(f"{CACHE_INIT}: exited {init['exit_code']} (could not hand the model cache to uid 1000)")
    busy = _busy_ports(plan, bind, plan.project)
    if busy:
        lines.insert(0, f"{'; '.join(busy)} already in use")
    what = "; ".join(lines) if lines else "compose gave up"
    if waited >= wait_timeout - 1:
        head = f"the services did not all become healthy within {wait_timeout}s"
    else:
        head = f"docker compose could not start the services (after {waited:.0f}s)"
    return f"{head}: {what}. See `vla ps` and `vla logs SERVICE`"


@click.command()
@click.option("--volumes", "remove_volumes", is_flag=True,
              help="Also remove the project's volumes, the model cache included (weights are downloaded again).")
@click.pass_context
def down(ctx, remove_volumes):
    """Stop and remove the services and network that `vla up` created; volumes stay unless --volumes."""
    from vla.deploy import engine

    loaded = lab_config(ctx)
    project, path = _project(loaded)
    try:
        args = ["down", "--remove-orphans"] + (["--volumes"] if remove_volumes else [])
        engine.run_compose(project, path, *args)
    except DeployError as exc:
        raise DeployFailed(str(exc)) from None
    kept = "" if remove_volumes else f" (volumes kept, the model cache {loaded.config.deploy.model_cache_volume} among them; --volumes removes them)"
    click.echo(f"{project}: removed{kept}", err=True)


def _port_text(container) -> str:
    ports = (container.attrs.get("NetworkSettings") or {}).get("Ports") or {}
    out = []
    for target, bindings in sorted(ports.items()):
        for b in bindings or []:
            out.append(f"{b.get('HostIp')}:{b.get('HostPort')}->{target}")
    return ", ".join(out)


def service_states(client, project: str) -> list[dict]:
    """Each container of the project: service, state, health, restarts, ports (docker SDK)."""
    rows = []
    for c in client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"}):
        state = c.attrs.get("State") or {}
        rows.append({
            "service": c.labels.get("com.docker.compose.service", "?"),
            "container": c.name,
            "image": (c.attrs.get("Config") or {}).get("Image", ""),
            "state": state.get("Status", c.status),
            "health": (state.get("Health") or {}).get("Status", "none"),
            "restarts": c.attrs.get("RestartCount", 0),
            "exit_code": state.get("ExitCode"),
            "plugin": c.labels.get("ai.vla.component", ""),
            "ports": _port_text(c),
        })
    return sorted(rows, key=lambda r: r["service"])


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def ps(ctx, as_json):
    """Show each service's state and health."""
    from rich.console import Console
    from rich.table import Table

    from vla.deploy import engine

    loaded = lab_config(ctx)
    project, _ = _project(loaded)
    try:
        rows = service_states(engine.docker_client(), project)
    except DeployError as exc:
        raise DeployFailed(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"project": project, "services": rows}, indent=2))
        return
    if not rows:
        click.echo(f"{project}: no services (start them with `vla up`)")
        return
    colours = {"healthy": "green", "starting": "yellow", "unhealthy": "red"}
    table = Table(title=f"project {project}")
    for column in ("service", "plugin", "state", "health", "restarts", "ports", "image"):
        table.add_column(column)
    for r in rows:
        health = f"[{colours.get(r['health'], 'white')}]{r['health']}[/]"
        table.add_row(r["service"], r["plugin"], r["state"], health, str(r["restarts"]), r["ports"], r["image"])
    Console().print(table)


@click.command()
@click.argument("service", required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--tail", default="all", show_default=True, help="Lines from the end of each log.")
@click.pass_context
def logs(ctx, service, follow, tail):
    """Show a service's logs (all services when none is named)."""
    from vla.deploy import engine

    loaded = lab_config(ctx)
    project, path = _project(loaded)
    args = ["logs", "--no-color", "--tail", str(tail)]
    if follow:
        args.append("--follow")
    if service:
        args.append(service)
    try:
        result = engine.run_compose(project, path, *args, check=False)
    except DeployError as exc:
        raise DeployFailed(str(exc)) from None
    sys.exit(result.returncode)


@click.command()
@click.argument("names", nargs=-1)
@click.option("--base-image", default=lambda: os.environ.get("VLA_BASE_IMAGE"), show_default="the Dockerfile's, or $VLA_BASE_IMAGE",
              help="Base image for every Dockerfile (BASE_IMAGE), e.g. one made by scripts/docker/make-base-image.sh.")
@click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CA bundle passed as the BuildKit secret 'ca' (default: the host's, if found).")
@click.option("--no-ca-bundle", is_flag=True, help="Pass no CA bundle.")
@click.option("--list", "list_only", is_flag=True, help="Show what would be built and exit.")
@click.pass_context
def build(ctx, names, base_image, ca_bundle, no_ca_bundle, list_only):
    """Build the runtime and plugin images.

    NAMES are plugin names (their services' images) or image folders under images/ (e.g.
    `runtime`). Without names: the images of the plugins in the lab config's deploy section,
    or the runtime image.
    """
    from vla.config import ConfigError
    from vla.deploy import images
    from vla.plugins import get_registry

    loaded = lab_config(ctx)
    registry = get_registry()
    root = images.source_root()
    deploy = loaded.config.deploy
    names = list(names) or [n for n in (deploy.policy, deploy.rewarder, deploy.trainer) if n] or ["runtime"]
    builds: dict[str, images.ImageBuild] = {}
    try:
        for name in names:
            if name == "runtime":
                b = images.runtime_build(images.runtime_plugins(registry) or None, root)
                builds.setdefault(b.image, b)
                continue
            entries = [attrs.evolve(e, spec=e.spec.with_profile(loaded.plugin_profile(e.spec)))
                       for e in (kind[name] for kind in registry.components.values() if name in kind)]
            if entries:
                found = images.builds_for(entries, registry, root)
                if not found:
                    raise DeployUsageError(f"{name!r} runs no image of its own (no service with a build context)")
                for b in found:
                    builds.setdefault(b.image, b)
                continue
            if (root / "images" / name / "Dockerfile").is_file():
                b = images.resolve_build(f"vla-{name}:latest", f"images/{name}", f"vla-{name}", "0.0.0", root)
                builds.setdefault(b.image, b)
                continue
            raise DeployUsageError(f"{name!r} is neither an installed plugin nor a folder under {root / 'images'}")
    except (DeployError, ConfigError) as exc:
        raise DeployUsageError(str(exc)) from None
    bundle = None if no_ca_bundle else (Path(ca_bundle) if ca_bundle else images.default_ca_bundle())
    if list_only:
        for b in builds.values():
            click.echo(f"{b.image}\t{b.dockerfile.relative_to(root) if b.dockerfile.is_relative_to(root) else b.dockerfile}\t{b.build_args}")
        return
    try:
        timings = images.run_builds(list(builds.values()), base_image=base_image, ca_bundle=bundle, log_dir=_state_dir(loaded) / "build")
    except DeployError as exc:
        raise DeployFailed(str(exc)) from None
    for image, seconds in timings.items():
        click.echo(f"{image}\tbuilt in {seconds:.0f}s")
