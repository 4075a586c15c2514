"""Regenerate the README's CLI reference from the installed `vla` command tree.

    python scripts/cli_reference.py          # rewrite README.md between the markers
    python scripts/cli_reference.py --check  # exit 1 if the README is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vla.cli import cli

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- cli-reference:begin -->", "<!-- cli-reference:end -->"


def _walk(group: click.Group, ctx: click.Context, prefix: str):
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        path = f"{prefix} {name}"
        sub_ctx = click.Context(command, info_name=name, parent=ctx)
        yield path, command, sub_ctx
        if isinstance(command, click.Group):
            yield from _walk(command, sub_ctx, path)


def reference() -> str:
    ctx = click.Context(cli, info_name="vla")
    lines = []
    for path, command, sub_ctx in _walk(cli, ctx, "vla"):
        usage = " ".join(command.collect_usage_pieces(sub_ctx))
        lines.append(f"### `{path} {usage}`".replace(" `", " `").rstrip())
        lines.append("")
        lines.append((command.help or command.short_help or "").strip().split("\n\n")[0])
        options = [p for p in command.params if isinstance(p, click.Option) and not p.hidden]
        if options:
            lines.append("")
            for option in options:
                record = option.get_help_record(sub_ctx)
                if record:
                    lines.append(f"- `{record[0]}`: {record[1]}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    text = README.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    new = text[:start] + "\n" + reference() + text[end:]
    if "--check" in sys.argv:
        if new != text:
            print("README.md's CLI reference is out of date: run python scripts/cli_reference.py")
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
