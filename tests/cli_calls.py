"""`jaxae` called in this test process, and the one-line refusal every bad setting gets."""

import contextlib
import io

from jaxae import cli


def cli_result(argv) -> tuple[int, str]:
    """Exit status and stderr of `jaxae ARGV` run in this process (stdout discarded)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as exit_:
            code = exit_.code
    return code, err.getvalue()


def assert_one_line(code: int, err: str, message: str) -> None:
    """Refused with exit status 2 in one line of stderr that holds `message`, no traceback."""
    assert code == 2, err
    assert message in err and "Traceback" not in err and err.count("\n") == 1, err
