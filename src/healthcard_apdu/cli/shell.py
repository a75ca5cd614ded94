"""``healthcard shell``: an interactive card explorer, or a script runner without a prompt.

Parsing a command line and running it is ``app.shell.Shell``; this module only chooses the
mode (terminal, ``--script FILE``, standard input), reads lines, prints replies and sets the
exit code. The terminal mode uses prompt_toolkit for line editing, the history file and tab
completion.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click

from healthcard_apdu.apdu.errors import HealthCardError
from healthcard_apdu.app.shell import (
    CheckFailed,
    Reply,
    Shell,
    ShellUsageError,
    Table,
    default_history_path,
    open_explorer,
)
from healthcard_apdu.card.explorer import ExplorerError
from healthcard_apdu.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    die,
    exit_code_for,
    exit_on_errors,
    render_table,
)
from healthcard_apdu.cli.options import (
    card_options,
    factor_options,
    hidden_prompt,
    pop_card_options,
    pop_factor_options,
    pop_security_options,
    product_factor_rule,
    profile_option,
    security_options,
    trace_option,
)

__all__ = ["shell_command"]


def error_exit_code(error: HealthCardError) -> int:
    """The exit code a failed shell command gives a script (docs/shell.md)."""
    if isinstance(error, ShellUsageError | ExplorerError):
        return EXIT_USAGE
    if isinstance(error, CheckFailed):
        return EXIT_FAILED
    return exit_code_for(error)


def show(reply: Reply, as_json: bool) -> None:
    """Print a reply: its blocks (or one JSON line) on stdout, an error on stderr."""
    if as_json:
        click.echo(json.dumps(reply.to_json(), ensure_ascii=False, default=str))
        return
    for block in reply.blocks:
        click.echo(render_table(block.rows, block.columns) if isinstance(block, Table) else block)
    if reply.error is not None:
        click.echo(f"error: {reply.error}", err=True)


def run_lines(
    shell: Shell, lines: Iterable[str], *, as_json: bool, keep_going: bool, echo: bool
) -> int:
    """Run command lines without a prompt; stop at the first error unless ``keep_going``.
    Returns the exit code: 0, or that of the first failed command."""
    code = EXIT_OK
    for line in lines:
        if echo and line.strip() and not line.lstrip().startswith("#"):
            click.echo(f"{shell.prompt()}{shell.masked(line.strip())}")
        reply = shell.execute(line)
        if reply is None:
            continue
        show(reply, as_json)
        if reply.error is not None:
            code = code or error_exit_code(reply.error)
            if not keep_going:
                break
        if reply.quit:
            break
    return code


def _script_lines(script: Path | None) -> Iterator[str]:
    if script is None or str(script) == "-":
        yield from sys.stdin
        return
    try:
        with open(script, encoding="utf-8") as handle:
            yield from handle
    except (OSError, UnicodeDecodeError) as exc:
        die(f"{script}: cannot read the script ({exc})", EXIT_USAGE)


def _interactive(shell: Shell, *, as_json: bool, history: Path | None) -> int:
    """The prompt loop: line editing, history, tab completion. Errors do not end it."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import CompleteEvent, Completer, Completion
    from prompt_toolkit.document import Document
    from prompt_toolkit.history import FileHistory, History, InMemoryHistory

    class ShellCompleter(Completer):
        def get_completions(
            self, document: Document, complete_event: CompleteEvent
        ) -> Iterator[Completion]:
            word, candidates = shell.complete(document.text_before_cursor)
            for candidate in candidates:
                yield Completion(candidate, start_position=-len(word))

    class SecretFreeHistory(FileHistory):
        """Lines carrying a PIN or key value are never kept."""

        def append_string(self, string: str) -> None:
            if not Shell.is_secret(string):
                super().append_string(string)

    kept: History = InMemoryHistory()
    if history is not None:
        try:
            history.parent.mkdir(parents=True, exist_ok=True)
            if not history.exists():
                os.close(os.open(history, os.O_WRONLY | os.O_CREAT, 0o600))
            kept = SecretFreeHistory(str(history))
        except OSError as exc:
            click.echo(f"warning: no history file ({history}: {exc.strerror})", err=True)
    session: PromptSession[str] = PromptSession(
        history=kept, completer=ShellCompleter(), complete_while_typing=False
    )
    click.echo(_banner(shell))
    while True:
        try:
            line = session.prompt(shell.prompt())
        except KeyboardInterrupt:
            continue
        except EOFError:
            break
        try:
            reply = shell.execute(line)
        except KeyboardInterrupt:
            shell.explorer.forget()
            click.echo("interrupted: the card's selection and security state are unknown", err=True)
            continue
        if reply is None:
            continue
        show(reply, as_json)
        if reply.quit:
            break
    return EXIT_OK


def _banner(shell: Shell) -> str:
    explorer = shell.explorer
    if explorer.card is None:
        where = "no card (ls -n, tree -n, select, decode and help work)"
    else:
        transport = explorer.card.channel.transport
        where = f"card in {transport.name}, ATR {transport.atr().hex().upper()}"
    module = explorer.security_backend or "none"
    return (
        f"healthcard shell: {where}; security module: {module}.\n"
        "help lists the commands, Tab completes, Ctrl-D leaves."
    )


@click.command("shell")
@card_options
@security_options
@trace_option
@factor_options
@profile_option
@click.option(
    "--script",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    metavar="FILE",
    help="Run the commands in FILE (- for standard input) without a prompt.",
)
@click.option(
    "--keep-going",
    is_flag=True,
    help="Scripts: go on after a failed command (the exit code is the first failure's).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line per command.")
@click.option(
    "--echo", is_flag=True, help="Scripts: print the prompt and each command, as on a terminal."
)
@click.option(
    "--history-file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Command history of the interactive shell "
    "(default: $XDG_STATE_HOME/healthcard/shell_history).",
)
@click.option("--no-history", is_flag=True, help="Keep no history file.")
@click.option(
    "--no-card", is_flag=True, help="Start without a card: the layout, decode and help only."
)
def shell_command(
    script: Path | None,
    keep_going: bool,
    as_json: bool,
    echo: bool,
    history_file: Path | None,
    no_history: bool,
    no_card: bool,
    **options: Any,
) -> None:
    """Explore a card: ls, select, read, write, auth, info, apdu, trace, decode, reset.

    On a terminal it prompts, with history and tab completion; with --script FILE, or with
    commands on standard input, it runs them without a prompt and stops at the first failed
    command (exit code as for the one-shot commands) unless --keep-going. The output is the
    same in every mode. Secrets come from the environment variables of the security options
    or a hidden prompt (never from standard input when the commands come from there).
    """
    from_stdin = (script is None and not sys.stdin.isatty()) or str(script) == "-"
    interactive = script is None and not from_stdin
    card = pop_card_options(options)
    security = pop_security_options(options, None if from_stdin else hidden_prompt)
    trace: Path | None = options.pop("trace")
    factor = pop_factor_options(options)
    profile_name: str | None = options.pop("profile_name")
    if no_card and (card.given or security.chosen() or trace is not None):
        die("--no-card takes no card, security or trace option", EXIT_USAGE)
    history = None if no_history else (history_file or default_history_path())
    with exit_on_errors():
        rule = product_factor_rule(factor, profile_name)
        explorer = open_explorer(
            None if no_card else card,
            security,
            trace=trace,
            factor_rule=rule,
            confirm_factor=factor.confirm,
        )
        with explorer as ex:
            shell = Shell(ex)
            if interactive:
                code = _interactive(shell, as_json=as_json, history=history)
            else:
                lines = _script_lines(script)
                code = run_lines(shell, lines, as_json=as_json, keep_going=keep_going, echo=echo)
    sys.exit(code)
