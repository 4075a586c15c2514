"""The `vla up --target k8s` branch of `vla up`: write the manifests folder, start nothing.

The cluster is the user's: vla neither holds credentials for it nor runs kubectl. It writes
what `kubectl apply -k DIR` needs and says what is left to do (the Secret's values).
"""

from __future__ import annotations

from pathlib import Path

import attrs
import click

from vla.deploy.errors import DeployError

DEFAULT_OUT = "k8s"  # under the lab's .vla/, beside compose.yaml
# `vla up` options that mean something only to compose, and why they do not apply
COMPOSE_ONLY = {
    "gpus": "Kubernetes' GPU device plugin hands each pod whole GPUs (nvidia.com/gpu); there are no device ids",
    "bind": "a Service of deploy.kubernetes.service_type publishes the ports",
    "wait_timeout": "nothing is started; `kubectl rollout status` waits",
    "build": "images are built with `vla build` and pushed where the cluster pulls (deploy.kubernetes.image_registry)",
}


def parse_replicas(values: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for value in values:
        name, sep, count = value.partition("=")
        if not sep or not name or not count.isdigit():
            raise DeployError(f"--replicas {value!r}: expected SERVICE=N, e.g. policy=2")
        out[name] = int(count)
    return out


def gpu_needs(services, replicas: dict[str, int]) -> dict[str, int]:
    """Whole GPUs per service, replicas included."""
    return {s.name: s.spec.gpus * replicas.get(s.name, 1) for s in services if s.spec.gpus > 0}


def up_kubernetes(ctx: click.Context, loaded, selection, *, out: str | None, replicas: tuple[str, ...], dry_run: bool,
                  role_pairs: dict[str, list[tuple[str, str]]] | None = None, insecure: bool = False) -> None:
    from vla.deploy import compose, manifests
    from vla.deploy.cli import STATE_DIR, DeployFailed, DeployUsageError
    from vla.deploy.resolve import resolve

    for name, why in COMPOSE_ONLY.items():
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            raise DeployUsageError(f"--{name.replace('_', '-')} is for compose: {why}")
    deploy = loaded.config.deploy
    try:
        k8s = attrs.evolve(deploy.kubernetes, replicas={**deploy.kubernetes.replicas, **parse_replicas(replicas)})
        deploy = attrs.evolve(deploy, kubernetes=k8s)
        overrides, host_mounts = {}, {}
        for role, pairs in (role_pairs or {}).items():
            overrides[role], host_mounts[role] = compose.host_path_overrides(pairs, Path.cwd())
        plan = compose.make_plan(selection, deploy)
        services = resolve(plan, deploy, selection, lab_config=loaded.path is not None,
                           overrides=overrides, host_mounts=host_mounts)
        lab_text = manifests.cluster_lab_config(loaded.path) if loaded.path is not None else None
        texts = manifests.render(services, deploy, lab_text, insecure=insecure)
    except DeployError as exc:
        raise DeployUsageError(str(exc)) from None

    try:
        problems = manifests.validate(texts, k8s.version)
        checked = f"valid for Kubernetes {k8s.version} (kubernetes-validate, strict)"
    except ImportError:
        problems, checked = [], "not validated (pip install kubernetes-validate)"
    except DeployError as exc:
        raise DeployUsageError(str(exc)) from None
    if problems:
        raise DeployFailed("the manifests do not match the Kubernetes schemas:\n  " + "\n  ".join(problems))

    if dry_run:
        for name, text in texts.items():
            click.echo(f"# ---- {name}\n{text}", nl=not text.endswith("\n"))
        click.echo(f"# {checked}; nothing written", err=True)
        return
    folder = Path(out) if out else loaded.base_dir / STATE_DIR / DEFAULT_OUT
    try:
        written = manifests.write(folder, texts)
    except DeployError as exc:
        raise DeployFailed(str(exc)) from None
    click.echo(f"wrote {len(written)} files to {folder}: {checked}", err=True)
    gpus = gpu_needs(services, k8s.replicas)
    if gpus:
        # compose may put several services on one GPU; a pod gets whole GPUs
        click.echo(f"the cluster needs {sum(gpus.values())} GPU(s) free: "
                   + ", ".join(f"{name} {n}" for name, n in gpus.items()), err=True)
    for path in written:
        click.echo(str(path))
    steps = []
    missing = manifests.missing_secrets(folder, services, insecure) if k8s.secret is None else []
    if missing:
        steps.append(f"write {folder / manifests.SECRETS_FILE} with {', '.join(missing)} (see {manifests.SECRETS_EXAMPLE})")
    elif k8s.secret is not None:
        steps.append(f"the Secret {k8s.secret!r} in namespace {manifests.namespace_of(deploy)} must hold "
                     + ", ".join(sorted({v for s in services for v in s.secrets})))
    steps.append(f"kubectl apply -k {folder}")
    steps.append(f"kubectl -n {manifests.namespace_of(deploy)} get pods,services   # arms connect to the public Services")
    click.echo("next:\n" + "\n".join(f"  {s}" for s in steps), err=True)
