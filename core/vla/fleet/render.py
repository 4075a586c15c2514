"""HTML pages from jinja2 templates in ``vla/fleet/templates`` and ``vla/lab/templates``."""

from __future__ import annotations

from typing import Any


def environment(package: str):
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader(package, "templates"),
                              autoescape=jinja2.select_autoescape(("html", "j2")), trim_blocks=True,
                              lstrip_blocks=True)


def render_dashboard(snapshot: dict[str, Any], title: str, refresh_ms: int) -> str:
    template = environment("vla.fleet").get_template("dashboard.html.j2")
    # the first snapshot rides in the page, so it shows the arms before its first poll
    return template.render(title=title, refresh_ms=refresh_ms, snapshot=snapshot)
