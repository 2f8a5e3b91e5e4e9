#!/usr/bin/env python3
"""Runs a scenario of `ephemeral-broker run` on a real pseudo-terminal (the test suite's terminal tests).

usage: run_in_pty.py EPHEMERAL_BROKER SCENARIO

Prints "ok" and exits 0 when the scenario behaves, or prints what went wrong and exits 1. Every wait has a
deadline: a command stopped on SIGTTIN, or a wrapper that hangs, is a failure within seconds, not a hung test.
"""
import os
import pty
import select
import signal
import sys
import time

broker, scenario = sys.argv[1], sys.argv[2]


def spawn(argv):
    pid, fd = pty.fork()
    if pid == 0:
        # As an interactive user's shell would have them: a test runner may start us with SIGINT ignored or
        # blocked, and both last across exec (a shell that ignores Ctrl-C rightly goes on with its loop).
        for number in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(number, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.execv(argv[0], argv)
    return pid, fd


def read_until(fd, needle, seconds=10.0):
    """What the terminal shows until `needle` appears (or the deadline passes, or the terminal closes)."""
    seen = b""
    deadline = time.monotonic() + seconds
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def wait(pid, seconds=10.0):
    """The child's wait status, or None when it did not exit in time (then it is killed)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def fail(why, shown=b""):
    print(f"{scenario}: {why}; the terminal showed {shown!r}")
    sys.exit(1)


def expect_exit(pid, shown, code=0):
    status = wait(pid)
    if status is None:
        fail("did not exit within 10 s (stopped on SIGTTIN?)", shown)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != code:
        fail(f"ended with wait status {status}", shown)


if scenario == "input":
    pid, fd = spawn([broker, "run", "--", "python3", "-c", "print('got', input())"])
    os.write(fd, b"hello\n")
    shown = read_until(fd, b"got hello")
    if b"got hello" not in shown:
        fail("the command did not read the terminal", shown)
    expect_exit(pid, shown)
elif scenario == "cat":
    pid, fd = spawn([broker, "run", "--", "cat"])
    os.write(fd, b"abc\n")
    shown = read_until(fd, b"abc\r\nabc")
    if b"abc\r\nabc" not in shown:
        fail("cat did not echo the line", shown)
    os.write(fd, b"\x04")
    expect_exit(pid, shown)
elif scenario == "stty":
    pid, fd = spawn([broker, "run", "--", "sh", "-c", "stty -echo && stty echo && stty size && echo stty-ok"])
    shown = read_until(fd, b"stty-ok")
    if b"stty-ok" not in shown:
        fail("stty could not set the terminal", shown)
    expect_exit(pid, shown)
elif scenario == "ctrl-c-loop":
    loop = f"for i in 1 2 3; do '{broker}' run -- sh -c 'echo sleeping; exec sleep 5'; echo next $i; done; echo finished"
    pid, fd = spawn(["/bin/bash", "-c", loop])
    shown = read_until(fd, b"sleeping")
    if b"sleeping" not in shown:
        fail("the command did not start", shown)
    time.sleep(0.2)  # let the wrapper settle into waiting for it; the assertion below does not depend on it
    os.write(fd, b"\x03")
    status = wait(pid, 5)
    shown += read_until(fd, b"\x00", 0.3)
    if status is None:
        fail("Ctrl-C did not stop the loop within 5 s", shown)
    if b"next" in shown or b"finished" in shown:
        fail("the loop went on after Ctrl-C", shown)
    if not os.WIFSIGNALED(status) or os.WTERMSIG(status) != signal.SIGINT:
        fail(f"the shell did not end by SIGINT (wait status {status})", shown)
else:
    fail("unknown scenario")
print("ok")
