"""``healthcard demo``: the README's main job (simulated card + SAM on vpcd, personalize, read)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from healthcard_apdu.cli.common import EXIT_FAILED, emit


@click.command("demo")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the card image and SAM key file here (default: a temporary folder).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole summary as JSON.")
def demo_command(workdir: Path | None, as_json: bool) -> None:
    """Personalize a simulated card through pcscd + vpcd, verify it and read it back."""
    from healthcard_apdu.app.demo import run_demo

    with tempfile.TemporaryDirectory(prefix="healthcard-demo-") as scratch:
        summary = run_demo(workdir or Path(scratch))
    ok = summary["verify"]["ok"] and summary["read_back_equals_record"]
    if as_json:
        emit(summary, True)
    else:
        emit(summary["rows"], False, columns=("file", "item", "code", "name", "value"))
        perso = summary["personalize"]
        click.echo("")
        click.echo(f"card reader      {summary['reader']} (SAM: {summary['sam_reader']})")
        click.echo(f"profile          {summary['profile']}")
        click.echo(f"card factor      {summary['card_factor']}")
        click.echo(f"personalization  {perso.get('apdus')} APDUs, {perso.get('bytes')} bytes")
        verify = summary["verify"]
        click.echo(
            f"verify           {'OK' if verify['ok'] else 'FAILED'}: "
            f"{verify['files_checked']} files, {len(verify['keys'])} keys, "
            f"{verify['forbidden_accesses_refused']} forbidden accesses refused"
        )
        click.echo(
            "read back        "
            + ("equals" if summary["read_back_equals_record"] else "DIFFERS FROM")
            + " the record"
        )
    if not ok:
        raise SystemExit(EXIT_FAILED)
