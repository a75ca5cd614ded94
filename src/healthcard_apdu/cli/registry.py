"""Where the command groups of each feature are attached to ``healthcard``."""

from __future__ import annotations

import importlib

import click

# (module, attribute) of each click command or group, in help order.
SUBCOMMANDS: tuple[tuple[str, str], ...] = (
    ("healthcard_apdu.cli.demo", "demo_command"),
    ("healthcard_apdu.cli.doctor", "doctor_command"),
    ("healthcard_apdu.cli.perso", "personalize_command"),
    ("healthcard_apdu.cli.perso", "verify_command"),
    ("healthcard_apdu.cli.card", "read_command"),
    ("healthcard_apdu.cli.card", "write_command"),
    ("healthcard_apdu.cli.shell", "shell_command"),
    ("healthcard_apdu.cli.conformance", "conformance_group"),
    ("healthcard_apdu.sim.cli", "sim"),
    ("healthcard_apdu.cli.keys", "keys_group"),
    ("healthcard_apdu.cli.batch", "batch"),
    ("healthcard_apdu.cli.ehc", "ehc_group"),
)


def register_subcommands(group: click.Group) -> None:
    for module_name, attribute in SUBCOMMANDS:
        command = getattr(importlib.import_module(module_name), attribute)
        group.add_command(command)
