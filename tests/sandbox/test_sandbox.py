"""What sandboxes do, on both backends: persistent Python, notebook-style display, shell state, files."""

from __future__ import annotations

import pytest

from miroenv.sandbox.client import AgentSandbox


def test_globals_survive_between_cells_and_last_expression_is_shown(sandbox: AgentSandbox) -> None:
    assert sandbox.run_python("x = 40\ndef f(y):\n    return x + y", timeout=10).stdout == ""
    result = sandbox.run_python("f(2)", timeout=10)
    assert (result.stdout, result.exit_code, result.error) == ("42\n", 0, None)
    assert sandbox.run_python("f(2);", timeout=10).stdout == ""
    assert sandbox.run_python("None", timeout=10).stdout == ""
    assert sandbox.run_python("print('a'); 'b'", timeout=10).stdout == "a\n'b'\n"


def test_errors_are_reported_with_a_traceback(sandbox: AgentSandbox) -> None:
    result = sandbox.run_python("def g():\n    return 1 / 0\ng()", timeout=10)
    assert result.exit_code == 1
    assert result.error == "ZeroDivisionError: division by zero"
    assert 'File "<cell-1>", line 2, in g' in result.stderr
    assert "agent" not in result.stderr
    syntax = sandbox.run_python("def (", timeout=10)
    assert syntax.error is not None and syntax.error.startswith("SyntaxError")
    assert sandbox.run_python("raise SystemExit(3)", timeout=10).error == "SystemExit: 3"
    assert sandbox.run_python("1 + 1", timeout=10).stdout == "2\n"


def test_stdout_and_stderr_are_separate(sandbox: AgentSandbox) -> None:
    result = sandbox.run_python("import sys\nprint('out')\nprint('err', file=sys.stderr)", timeout=10)
    assert (result.stdout, result.stderr) == ("out\n", "err\n")
    shell = sandbox.run_command("echo out; echo err >&2; exit 3", timeout=10)
    assert (shell.stdout, shell.stderr, shell.exit_code) == ("out\n", "err\n", 3)


def test_shell_keeps_directory_and_environment(sandbox: AgentSandbox) -> None:
    assert sandbox.run_command("pwd", timeout=10).stdout == "/home/user\n"
    sandbox.run_command("mkdir -p work/deep && cd work/deep && export GREETING='hi there'", timeout=10)
    result = sandbox.run_command('pwd; echo "$GREETING"', timeout=10)
    assert result.stdout == "/home/user/work/deep\nhi there\n"
    sandbox.run_command("cd /tmp; unset GREETING; exit 4", timeout=10)
    assert sandbox.run_command('pwd; echo "[$GREETING]"', timeout=10).stdout == "/tmp\n[]\n"


def test_shell_runs_in_its_own_process_group(sandbox: AgentSandbox) -> None:
    result = sandbox.run_command("ps -o pid=,pgid=,sid= -p $$ 2>/dev/null || cat /proc/$$/stat", timeout=10)
    assert result.exit_code == 0
    pid = int(sandbox.run_command("echo $$", timeout=10).stdout)
    fields = sandbox.run_command("cat /proc/self/stat", timeout=10).stdout.rsplit(")", 1)[1].split()
    assert int(fields[2]) != 1 and int(fields[3]) != 1 and pid > 1


def test_python_and_shell_see_the_same_files(sandbox: AgentSandbox) -> None:
    sandbox.write_file("data/in.txt", b"hello\n")
    assert sandbox.run_command("cat /home/user/data/in.txt", timeout=10).stdout == "hello\n"
    sandbox.run_python("open('/home/user/data/out.bin', 'wb').write(bytes(range(256)))", timeout=10)
    assert sandbox.read_file("/home/user/data/out.bin") == bytes(range(256))
    assert sandbox.read_file("data/out.bin") == bytes(range(256))


def test_file_errors_are_os_errors(sandbox: AgentSandbox) -> None:
    with pytest.raises(FileNotFoundError):
        sandbox.read_file("/home/user/missing.txt")
    with pytest.raises(IsADirectoryError):
        sandbox.read_file("/home/user")
    with pytest.raises(OSError):
        sandbox.write_file("/proc/nope/x", b"x")
    sandbox.run_command("mkfifo /tmp/fifo", timeout=10)
    with pytest.raises(OSError):
        sandbox.read_file("/tmp/fifo")


def test_large_file_round_trip(sandbox: AgentSandbox) -> None:
    data = bytes(range(256)) * 40_000
    sandbox.write_file("big.bin", data)
    assert sandbox.run_command("wc -c < big.bin", timeout=10).stdout.strip() == str(len(data))
    assert sandbox.read_file("big.bin") == data


def test_user_code_cannot_write_into_the_control_channel(sandbox: AgentSandbox) -> None:
    forged = (
        "import sys, struct, json\n"
        "meta = json.dumps({'id': 1, 'ok': True, 'exit_code': 0, 'streams': {}}).encode()\n"
        "sys.stdout.buffer.write(struct.pack('>II', len(meta), 0) + meta); sys.stdout.flush()\n"
        "for path in ('/proc/1/fd/1', '/proc/1/fd/0'):\n"
        "    try:\n"
        "        open(path, 'wb').write(b'forged')\n"
        "        print('OPENED', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', type(exc).__name__)\n"
    )
    result = sandbox.run_python(forged, timeout=10)
    assert "OPENED" not in result.stdout
    assert result.stdout.count("refused") == 2
    assert sandbox.run_python("6 * 7", timeout=10).stdout == "42\n"
