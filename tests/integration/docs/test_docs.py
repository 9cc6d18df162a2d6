"""The user docs: every ``python -m transferlab.train`` / ``eval`` command in the README and in
``docs/`` composes (Hydra's ``--cfg job``: the same config the command would run), and every
link between the pages points at a file that exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from conftest import compose_config
from transferlab.utils.entry import first_sweep_value

ROOT = Path(__file__).resolve().parents[3]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# a placeholder is written <like_this> (a run directory, a sweep): the check fills it with a path
PLACEHOLDER = re.compile(r"<[^<>\s]+>")


def commands() -> list[tuple[str, str, list[str]]]:
    """(page, command line, its arguments) of every ``python -m transferlab.train|eval`` line in a
    fenced code block or in inline code, continuation lines joined, comments dropped."""
    found = []
    for page in PAGES:
        text = page.read_text()
        blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.DOTALL)
        lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
        lines += re.findall(r"`(python -m transferlab\.(?:train|eval)[^`]*)`", text)
        for line in lines:
            line = line.split(" #")[0].strip()
            match = re.search(r"(?:torchrun .*?)?-m (transferlab\.(?:train|eval))\b(.*)", line)
            if match and line.lstrip().startswith(("python", "torchrun")):
                found.append((page.name, line, [match.group(1), *shlex.split(match.group(2))]))
    return found


COMMANDS = commands()


def overrides_of(arguments: list[str]) -> list[str]:
    """The command's overrides with a sweep reduced to its first value and placeholders filled."""
    args = [
        PLACEHOLDER.sub("placeholder", a) for a in arguments if not a.startswith("-")
    ]  # flags: -m, --help
    parser = OverridesParser.create()
    conf_dir = ROOT / "conf"
    out = []
    for arg in args:
        override = parser.parse_override(arg)
        if override.is_hydra_override():
            continue
        if override.is_sweep_override():
            out.append(f"{arg.split('=', 1)[0]}={first_sweep_value(override, conf_dir)}")
        else:
            out.append(arg)
    return out


def test_the_docs_hold_the_commands_a_user_runs():
    assert len(COMMANDS) >= 40
    pages = {page for page, _, _ in COMMANDS}
    assert {"README.md", "methods.md", "sweeps.md", "cluster.md", "runs.md"} <= pages


@pytest.mark.parametrize(
    ("page", "line", "arguments"), COMMANDS, ids=[f"{p}:{i}" for i, (p, _, _) in enumerate(COMMANDS)]
)
def test_every_documented_command_composes(tmp_path, page, line, arguments):
    module, *args = arguments
    config_name = "eval" if module.endswith("eval") else "train"
    cfg = compose_config(overrides_of(args), tmp_path, config_name)
    assert cfg.get("paths") is not None, line


def test_the_placeholder_check_fills_placeholders_and_reduces_sweeps():
    assert overrides_of(["-m", "method.lam=0,0.1", "ckpt_path=logs/<run>/last.ckpt"]) == [
        "method.lam=0",
        "ckpt_path=logs/placeholder/last.ckpt",
    ]


def test_every_link_between_the_pages_points_at_a_file():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#]+?)(?:#[^)]*)?\)", page.read_text()):
            if target.startswith("http"):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to {target}"


def test_the_readme_lists_every_option_of_every_group_it_names():
    """The config-group table is read against the groups: an option added to a group (a family's
    new member) and not listed, or one listed that no longer exists, fails here."""
    from transferlab.utils.families import group_options

    text = (ROOT / "README.md").read_text()
    rows = [line for line in text.split("## Config groups", 1)[1].splitlines() if line.startswith("| `")]
    checked = 0
    for row in rows:
        groups, options = row.split("|")[1:3]
        named = re.findall(r"`([a-z0-9_/]+)`", groups)
        listed = set(re.findall(r"`([a-z0-9_]+)`", options))
        for group in (g for g in named if (ROOT / "conf" / g).is_dir()):
            missing = set(group_options(group)) - listed
            assert not missing, f"README's `{group}` row does not list {sorted(missing)}"
            checked += 1
        subgroups = re.findall(r"`(method/[a-z_]+)` \(([^)]*)\)", options)
        for group, inner in subgroups:
            assert set(re.findall(r"`([a-z0-9_]+)`", inner)) == set(group_options(group)), group
            checked += 1
    assert checked >= 10
