"""`vla plugins list|install|uninstall`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import click

from vla.specs import KINDS


def plugin_rows(kind: str | None = None) -> list[dict]:
    """One row per registered component, plus one per plugin that failed to load."""
    from vla.plugins import get_registry

    registry = get_registry()
    rows = []
    for k in KINDS if kind is None else (kind,):
        for name, reg in sorted(registry.components[k].items()):
            spec = reg.spec
            rows.append(
                {
                    "distribution": reg.distribution,
                    "version": reg.version,
                    "kind": k,
                    "name": name,
                    "description": spec.description,
                    "factory": spec.factory,
                    "config": spec.config.__name__ if spec.config else None,
                    "image": spec.service.image if spec.service else None,
                    "services": [
                        {"name": s.name, "image": s.image, "port": s.port, "gpus": s.gpus} for s in spec.services
                    ],
                    # robots: where their joints, limits and kinematics are (an import path, not imported here)
                    "robot_description": getattr(spec, "robot_description", None),
                }
            )
    return rows


@click.group()
def plugins() -> None:
    """List, install and uninstall plugins."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--kind", type=click.Choice(KINDS), default=None, help="Only this kind of component.")
def list_cmd(as_json: bool, kind: str | None) -> None:
    """Show installed plugins and what each registers."""
    from vla.plugins import get_registry

    registry = get_registry()
    rows = plugin_rows(kind)
    if as_json:
        payload = {
            "components": rows,
            "plugins": [{"distribution": p.distribution, "version": p.version, "module": p.module} for p in registry.plugins],
            "failures": [{"distribution": f.distribution, "error": f.error} for f in registry.failures],
        }
        click.echo(json.dumps(payload, indent=2))
        return
    columns = ("distribution", "version", "kind", "name", "description", "image")
    click.echo(format_table(columns, [[str(row[c] or "") for c in columns] for row in rows]))
    for failure in registry.failures:
        click.secho(f"failed: {failure.distribution}: {failure.error}", fg="red", err=True)


def format_table(columns: tuple[str, ...], rows: list[list[str]]) -> str:
    """A plain aligned table. `vla plugins list` runs often; rich would cost it a tenth of a second."""
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def installer_command() -> list[str]:
    """pip in this environment, or `uv pip` where the environment has no pip (uv-made venvs)."""
    try:
        import pip  # noqa: F401

        return [sys.executable, "-m", "pip"]
    except ImportError:
        uv = shutil.which("uv")
        if uv is None:
            raise click.ClickException("neither pip nor uv is available in this environment") from None
        return [uv, "pip", "--python", sys.executable]


def _run_installer(args: list[str]) -> None:
    command = installer_command() + args
    click.echo("+ " + " ".join(command), err=True)
    result = subprocess.run(command)
    if result.returncode != 0:
        raise SystemExit(result.returncode)


@plugins.command("install")
@click.argument("packages", nargs=-1, required=True)
@click.option("-e", "--editable", is_flag=True, help="Install a local folder in editable mode.")
@click.option("-U", "--upgrade", is_flag=True, help="Upgrade if already installed.")
def install_cmd(packages: tuple[str, ...], editable: bool, upgrade: bool) -> None:
    """Install plugin packages into vla's own environment (a thin wrapper around pip)."""
    args = ["install"]
    if upgrade:
        args.append("--upgrade")
    for package in packages:
        args += ["-e", package] if editable else [package]
    _run_installer(args)


@plugins.command("uninstall")
@click.argument("packages", nargs=-1, required=True)
def uninstall_cmd(packages: tuple[str, ...]) -> None:
    """Uninstall plugin packages from vla's environment."""
    if any(p.strip().lower() == "vla" for p in packages):
        raise click.ClickException("refusing to uninstall vla itself; use pip directly")
    uses_pip = installer_command()[:2] == [sys.executable, "-m"]
    # pip asks for confirmation, uv does not and rejects -y
    _run_installer(["uninstall", *(["-y"] if uses_pip else []), *packages])
