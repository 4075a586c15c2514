"""Building the images the service specs name, with BuildKit, OCI labels and rich progress.

An image is built from the folder a spec's ``build_context`` names (it holds the Dockerfile).
When that folder lies inside the vla source tree, the build context is the tree's root, so a
Dockerfile can install the core and plugins from source; a ``Dockerfile.dockerignore`` beside
it keeps the context small. Every build passes ``BASE_IMAGE`` (when given), the vla version
and protocol, and the plugin's name and version as build args and as OCI labels, and the
host's CA bundle as the BuildKit secret ``ca`` (never stored in a layer).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections import deque
from pathlib import Path

import attrs

from vla import __version__
from vla.deploy.errors import DeployError

RUNTIME_IMAGE = "vla-runtime:latest"
RUNTIME_CONTEXT = "images/runtime"
CA_CANDIDATES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")
STEP_RE = re.compile(r"^#\d+ \[(?:[\w.-]+ )?(\d+)/(\d+)\] (.*)$")


def protocol_version() -> str:
    try:
        from vla.protocol import PROTOCOL_VERSION  # owned by the serving work; light module

        return str(PROTOCOL_VERSION)
    except Exception:
        return "vla/1"


def source_root() -> Path:
    """The vla source tree holding images/ (an editable install or a checkout), else the cwd."""
    env = os.environ.get("VLA_SOURCE_DIR")
    if env:
        return Path(env).resolve()
    import vla

    here = Path(vla.__file__).resolve().parent  # core/vla
    for candidate in (here.parent.parent, Path.cwd()):
        if (candidate / "images").is_dir():
            return candidate
    return Path.cwd()


def default_ca_bundle() -> Path | None:
    for candidate in (os.environ.get("VLA_CA_BUNDLE"), os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"), *CA_CANDIDATES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@attrs.frozen
class ImageBuild:
    """One image to build: its tag, Dockerfile, context and the plugin it carries."""

    image: str
    dockerfile: Path
    context: Path
    plugin_name: str
    plugin_version: str
    build_args: dict[str, str] = attrs.field(factory=dict)

    @property
    def folder(self) -> str:
        return self.dockerfile.parent.name


def resolve_build(image: str, build_context: str, plugin_name: str, plugin_version: str, root: Path | None = None) -> ImageBuild:
    root = (root or source_root()).resolve()
    folder = Path(build_context)
    folder = (folder if folder.is_absolute() else root / folder).resolve()
    dockerfile = folder / "Dockerfile"
    if not dockerfile.is_file():
        raise DeployError(f"image {image}: no Dockerfile in {folder} (build_context {build_context!r}, source tree {root})")
    context = root if folder.is_relative_to(root) else folder
    return ImageBuild(image, dockerfile, context, plugin_name, plugin_version)


def plugin_folders(root: Path) -> dict[str, str]:
    """Distribution name -> folder (relative to ``root``) of each plugin in the source tree."""
    import tomllib

    found = {}
    for pyproject in sorted(root.glob("plugins/*/*/pyproject.toml")):
        try:
            name = tomllib.loads(pyproject.read_text())["project"]["name"]
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            continue
        found[name.lower().replace("_", "-")] = pyproject.parent.relative_to(root).as_posix()
    return found


EXTRA_PLUGINS = "plugins/_extra"  # where staged third-party plugin sources go in the build context
_STAGE_IGNORE = ("__pycache__", "*.pyc", "*.egg-info", "build", "dist", ".git", ".venv", "venv", ".pytest_cache",
                 ".mypy_cache", ".vla")


def plugin_source(distribution: str) -> tuple[str, str]:
    """Where the runtime image gets a plugin that is not in this source tree: ("dir", folder)
    for one pip installed from a local folder (PEP 610's direct_url.json says which), else
    ("pypi", "name==version") from the package index. DeployError when it is not installed."""
    import json
    from importlib import metadata
    from urllib.parse import unquote, urlsplit

    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise DeployError(f"plugin {distribution} is not installed here, so it cannot go into the runtime image") from None
    direct = dist.read_text("direct_url.json")
    if direct:
        info = json.loads(direct)
        url = urlsplit(info.get("url", ""))
        if url.scheme == "file" and "dir_info" in info:
            folder = Path(unquote(url.path))
            if (folder / "pyproject.toml").is_file() or (folder / "setup.py").is_file():
                return "dir", str(folder)
            raise DeployError(f"plugin {distribution} was installed from {folder}, which is no longer a package folder")
    return "pypi", f"{dist.metadata['Name']}=={dist.version}"


def _stage_runtime_context(root: Path, extras: dict[str, Path]) -> Path:
    """A build context with the core, the in-tree plugins and the given plugin folders under
    plugins/_extra/: a third-party plugin's folder lies outside the source tree, and a build
    context cannot reach outside itself."""
    import shutil
    import tempfile

    stage = Path(tempfile.gettempdir()) / f"vla-build-{os.getuid()}" / "runtime"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    ignore = shutil.ignore_patterns(*_STAGE_IGNORE)
    for name in ("pyproject.toml", *(p.name for p in root.glob("README*"))):
        shutil.copy2(root / name, stage / name)
    for folder in ("core", "plugins", RUNTIME_CONTEXT):
        shutil.copytree(root / folder, stage / folder, ignore=ignore, dirs_exist_ok=True)
    for name, source in extras.items():
        shutil.copytree(source, stage / EXTRA_PLUGINS / name, ignore=ignore)
    return stage


def runtime_build(plugins: list[str] | None = None, root: Path | None = None) -> ImageBuild:
    """The runtime image, with the given plugin distributions installed.

    Plugins in this source tree install from their folders; a third-party plugin installs from
    the folder pip installed it from (staged into the build context), or by name and version
    from the package index. Without a list the Dockerfile's default set is used.
    """
    root = (root or source_root()).resolve()
    build = resolve_build(RUNTIME_IMAGE, RUNTIME_CONTEXT, "vla-runtime", __version__, root)
    if plugins is None:
        return build
    folders = plugin_folders(root)
    plugins = [p.lower().replace("_", "-") for p in plugins]
    local = {p for p in plugins if p in folders}
    selected = sorted(with_local_dependencies({folders[p] for p in local}, folders, root))
    extras: dict[str, Path] = {}
    for name in (p for p in plugins if p not in folders):
        kind, where = plugin_source(name)
        if kind == "dir":
            extras[name] = Path(where)
            selected.append(f"{EXTRA_PLUGINS}/{name}")
        else:
            selected.append(where)
    build = attrs.evolve(build, build_args={"PLUGINS": " ".join(selected), "PLUGIN_DISTS": " ".join(sorted(set(plugins)))})
    if extras:
        stage = _stage_runtime_context(root, extras)
        build = attrs.evolve(build, context=stage, dockerfile=stage / RUNTIME_CONTEXT / "Dockerfile")
    return build


def with_local_dependencies(selected: set[str], folders: dict[str, str], root: Path) -> set[str]:
    """``selected`` plugin folders plus the in-repository distributions they depend on (vla-sim
    needs vla-so101-description, which is not on PyPI), transitively."""
    import re
    import tomllib

    out, todo = set(selected), list(selected)
    while todo:
        folder = todo.pop()
        try:
            deps = tomllib.loads((root / folder / "pyproject.toml").read_text())["project"].get("dependencies", [])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            continue
        for dep in deps:
            name = re.split(r"[\s\[<>=!~;]", dep, maxsplit=1)[0].lower().replace("_", "-")
            if name in folders and folders[name] not in out:
                out.add(folders[name])
                todo.append(folders[name])
    return out


def runtime_plugins(registry) -> list[str]:
    """Every loaded plugin distribution whose services run in the runtime image."""
    names = []
    for kind in registry.components.values():
        for entry in kind.values():
            if any(s.image == RUNTIME_IMAGE for s in entry.spec.services) and entry.distribution not in names:
                names.append(entry.distribution)
    return sorted(names)


def builds_for(registered, registry=None, root: Path | None = None) -> list[ImageBuild]:
    """The images the given registry entries' services build, one per tag, in order.

    The runtime image is shared by the CPU plugins: it gets every plugin of ``registry`` that
    runs in it, so one build serves all of them.
    """
    out: dict[str, ImageBuild] = {}
    for entry in registered:
        for service in entry.spec.services:
            if service.build_context is None or service.image in out:
                continue
            if service.image == RUNTIME_IMAGE:
                plugins = runtime_plugins(registry) if registry is not None else [entry.distribution]
                out[service.image] = runtime_build(plugins, root)
            else:
                out[service.image] = resolve_build(service.image, service.build_context, entry.distribution, entry.version, root)
    return list(out.values())


def build_command(
    build: ImageBuild,
    docker: str,
    *,
    base_image: str | None = None,
    ca_bundle: Path | None = None,
    extra_args: dict[str, str] | None = None,
) -> list[str]:
    protocol = protocol_version()
    args = {
        "VLA_VERSION": __version__,
        "VLA_PROTOCOL": protocol,
        "PLUGIN_NAME": build.plugin_name,
        "PLUGIN_VERSION": build.plugin_version,
    }
    if base_image:
        args["BASE_IMAGE"] = base_image
    args.update(build.build_args)
    args.update(extra_args or {})
    labels = {
        "org.opencontainers.image.title": build.image.split(":")[0],
        "org.opencontainers.image.version": build.plugin_version,
        "org.opencontainers.image.created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ai.vla.plugin.name": build.plugin_name,
        "ai.vla.plugin.version": build.plugin_version,
        "ai.vla.protocol": protocol,
        "ai.vla.version": __version__,
    }
    if base_image:
        labels["org.opencontainers.image.base.name"] = base_image
    cmd = [docker, "build", "--progress=plain", "-f", str(build.dockerfile), "-t", build.image]
    name, _, tag = build.image.rpartition(":")
    if tag == "latest":
        cmd += ["-t", f"{name}:{build.plugin_version}"]  # a versioned tag beside latest
    for key, value in args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    for key, value in labels.items():
        cmd += ["--label", f"{key}={value}"]
    if ca_bundle is not None:
        cmd += ["--secret", f"id=ca,src={ca_bundle}"]
    cmd.append(str(build.context))
    return cmd


def run_builds(
    builds: list[ImageBuild],
    *,
    base_image: str | None = None,
    ca_bundle: Path | None = None,
    log_dir: Path,
    console=None,
) -> dict[str, float]:
    """Build each image in turn with a progress bar per image; returns seconds per image.

    The full BuildKit log of each build goes to ``log_dir/<image>.log``; a failed build
    raises DeployError with the log's tail.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from vla.deploy.engine import buildkit_docker

    console = console or Console(stderr=True)
    docker = buildkit_docker()
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DOCKER_BUILDKIT="1")
    timings: dict[str, float] = {}
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[image]}"),
        BarColumn(bar_width=20),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[step]}", style="dim"),
        console=console,
        transient=False,
    ) as progress:
        for build in builds:
            task = progress.add_task("build", total=None, image=build.image, step="starting")
            cmd = build_command(build, docker, base_image=base_image, ca_bundle=ca_bundle)
            log_path = log_dir / (re.sub(r"[^\w.-]+", "_", build.image) + ".log")
            tail: deque[str] = deque(maxlen=40)
            start = time.monotonic()
            with open(log_path, "w") as log:
                log.write("$ " + " ".join(cmd) + "\n")
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)
                assert proc.stdout is not None
                for line in proc.stdout:
                    log.write(line)
                    line = line.rstrip()
                    tail.append(line)
                    match = STEP_RE.match(line)
                    if match:
                        done, total, what = int(match[1]), int(match[2]), match[3]
                        progress.update(task, total=total, completed=done - 1, step=what[:60])
                code = proc.wait()
            elapsed = time.monotonic() - start
            if code != 0:
                progress.update(task, step="[red]failed")
                raise DeployError(
                    f"building {build.image} failed (exit {code}); full log: {log_path}\n" + "\n".join(tail)
                )
            total = progress.tasks[task].total or 1
            progress.update(task, total=total, completed=total, step=f"done in {elapsed:.0f}s")
            timings[build.image] = elapsed
    return timings


DISTS_LABEL = "ai.vla.plugin.distributions"


def image_is_current(client, build: ImageBuild) -> bool:
    """Whether the image exists and, for the runtime image, carries every plugin this build would put in."""
    import docker.errors

    try:
        image = client.images.get(build.image)
    except docker.errors.ImageNotFound:
        return False
    wanted = set(build.build_args.get("PLUGIN_DISTS", "").split())
    have = set(((image.attrs.get("Config") or {}).get("Labels") or {}).get(DISTS_LABEL, "").split())
    return wanted <= have


def image_exists(client, image: str) -> bool:
    import docker.errors

    try:
        client.images.get(image)
        return True
    except docker.errors.ImageNotFound:
        return False


def pull(image: str) -> None:
    """Pull a pinned upstream image (docker's own progress on the terminal); DeployError when it fails."""
    from vla.deploy.engine import docker_cli

    result = subprocess.run([docker_cli(), "pull", image])
    if result.returncode != 0:
        raise DeployError(
            f"cannot pull {image} (exit {result.returncode}); on a host without a registry, pull it elsewhere and "
            f"bring it over with `docker save {image} | ssh gpu-host docker load`"
        )
