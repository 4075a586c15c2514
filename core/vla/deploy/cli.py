"""`vla up`, `vla down`, `vla ps`, `vla logs`, `vla build`: the GPU host's services under compose.

`vla up` writes the compose project to `.vla/compose.yaml` beside the lab config (or in the
working directory) and the other commands find the project through that file, falling back
to `deploy.project` from the lab config.

`vla down` removes the project's containers, network and volumes, the model cache included,
so nothing of the project is left; `--keep-cache` keeps the model cache volume (weights take
long to download again) and removes the rest.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

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
        except ConfigError as exc:
            raise DeployUsageError(f"bad configuration for {role} {name!r}: {exc}") from None
        components[role] = registered.spec
        distributions[role] = (registered.distribution, registered.version)
    return registry, Selection(components, distributions)


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
@click.option("--dry-run", is_flag=True, help="Print the compose file (with --target k8s: the manifests) and start nothing.")
@click.option("--build/--no-build", default=True, show_default=True, help="Build missing vla images first.")
@click.option("--wait-timeout", default=900, show_default=True, type=int, help="Seconds to wait for every service to be healthy.")
@click.option("--target", type=click.Choice(["compose", "k8s"]), default="compose", show_default=True,
              help="compose: start the services here; k8s: write Kubernetes manifests from the same specs.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="k8s: folder for the manifests (default: .vla/k8s).")
@click.option("--replicas", multiple=True, metavar="SERVICE=N", help="k8s: pods for a service, e.g. policy=2 (default: deploy.kubernetes.replicas).")
@click.pass_context
def up(ctx, policy, rewarder, trainer, gpus, bind, dry_run, build, wait_timeout, target, out, replicas):
    """Start the policy / rewarder services with docker compose and wait until they are healthy.

    The compose file goes to .vla/compose.yaml; `--dry-run` prints it (checked with
    `docker compose config` when compose is installed, kept as .vla/compose.dry-run.yaml) and
    starts nothing. `--target k8s` writes Kubernetes manifests to apply with `kubectl apply -k DIR`
    instead (`--dry-run` prints them).
    """
    import yaml

    from vla.deploy import compose, engine

    loaded = lab_config(ctx)
    registry, selection = _resolve(loaded, policy, rewarder, trainer)
    if target == "k8s":
        from vla.deploy.kubernetes_cli import up_kubernetes

        return up_kubernetes(ctx, loaded, selection, out=out, replicas=replicas, dry_run=dry_run)
    if out or replicas:
        raise DeployUsageError("--out and --replicas are for --target k8s")
    deploy = loaded.config.deploy
    bind = bind or os.environ.get("VLA_BIND_ADDRESS") or deploy.bind_address
    try:
        plan = compose.make_plan(selection, deploy)
        doc = compose.compose_dict(
            plan, deploy, selection, gpus=gpus, bind=bind,
            lab_config_path=str(loaded.path.resolve()) if loaded.path else None,
        )
    except DeployError as exc:
        raise DeployUsageError(str(exc)) from None
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
        engine.validate_compose(path, plan.project)
        client = engine.docker_client()
        if plan.gpu_services:
            engine.require_nvidia(client, [s.compose_name for s in plan.gpu_services])
        if build:
            _build_missing(client, registry, selection, _state_dir(loaded))
        click.echo(f"starting {plan.project}: {', '.join(s.compose_name for s in plan.services)}", err=True)
        start = time.monotonic()
        result = engine.run_compose(plan.project, path, "up", "-d", "--wait", "--wait-timeout", str(wait_timeout), "--remove-orphans", check=False)
        if result.returncode != 0:
            raise DeployError(
                f"the services did not all become healthy within {wait_timeout}s; see `vla ps` and `vla logs SERVICE`"
            )
    except DeployError as exc:
        raise DeployFailed(str(exc)) from None
    click.echo(f"healthy after {time.monotonic() - start:.1f}s", err=True)
    for name, url in compose.service_urls(plan, _display_host(bind)).items():
        click.echo(f"{name:<10} {url}")


def _build_missing(client, registry, selection, state_dir: Path) -> None:
    from vla.deploy import images
    from vla.deploy.compose import ROLE_KINDS

    wanted = [registry.get(ROLE_KINDS[role], spec.name) for role, spec in selection.components.items()]
    missing = [b for b in images.builds_for(wanted, registry) if not images.image_exists(client, b.image)]
    if missing:
        click.echo(f"building missing image(s): {', '.join(b.image for b in missing)}", err=True)
        images.run_builds(
            missing, base_image=os.environ.get("VLA_BASE_IMAGE"), ca_bundle=images.default_ca_bundle(),
            log_dir=state_dir / "build",
        )


@click.command()
@click.option("--keep-cache", is_flag=True, help="Keep the model cache volume (remove everything else).")
@click.pass_context
def down(ctx, keep_cache):
    """Stop and remove the services, network and volumes that `vla up` created."""
    from vla.deploy import engine

    loaded = lab_config(ctx)
    project, path = _project(loaded)
    try:
        if keep_cache:
            engine.run_compose(project, path, "down", "--remove-orphans")
            client = engine.docker_client()
            cache = loaded.config.deploy.model_cache_volume
            for volume in client.volumes.list(filters={"label": f"com.docker.compose.project={project}"}):
                if volume.name != cache:
                    volume.remove()
        else:
            engine.run_compose(project, path, "down", "--remove-orphans", "--volumes")
    except DeployError as exc:
        raise DeployFailed(str(exc)) from None
    kept = f" (kept volume {loaded.config.deploy.model_cache_volume})" if keep_cache else ""
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
            entries = [kind[name] for kind in registry.components.values() if name in kind]
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
    except DeployError as exc:
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
