"""``dcgan-lab`` commands run in forks of one process that imported the CLI's heavy libraries once.

A command started as ``python -m orchestrator.cli`` spends 7-9 s of CPU importing torch and
MLflow before it reads its arguments; fifty bad-input cases paid that fifty times. Here one
process (this file, run as a script) imports them, then forks once per command: the fork sets the
command's working directory, environment and standard streams (files), runs the CLI's module as
``__main__`` exactly as ``python -m`` does, and exits with its status; an exception that escapes
the CLI prints its traceback to the command's stderr and exits 1, as Python itself would.

Protocol (the server's stdin and stdout, one JSON object a line): a request names ``id``, ``argv``,
``cwd``, ``env``, ``stdout`` and ``stderr`` (paths); the server answers ``{"id": ..., "code": N}``
when that command has ended. At most ``--jobs`` commands run at once. Ray is not imported here: a
command that starts Ray imports it in its own fork.
"""
import atexit
import json
import os
import runpy
import select
import sys
import threading
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _child(req):
    """In the fork: become the command, run it, never return."""
    code = 1
    try:
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        for fd, path, mode in ((0, os.devnull, os.O_RDONLY), (1, req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                               (2, req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            opened = os.open(path, mode, 0o644)
            os.dup2(opened, fd)
            os.close(opened)
        sys.argv = [str(ROOT / "orchestrator" / "cli.py"), *req["argv"]]
        sys.modules.pop("orchestrator.cli", None)   # run as __main__ only, as `python -m` runs it
        try:
            runpy.run_module("orchestrator.cli", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            if not isinstance(done.code, (int, type(None))):
                print(done.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 - what the interpreter would print for an uncaught exception
            traceback.print_exc()
            code = 1
    finally:
        try:
            atexit._run_exitfuncs()   # what the interpreter runs at exit (Ray's shutdown among them)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve(jobs):
    """Read requests, fork them (``jobs`` at a time), answer each one's exit status."""
    sys.path.insert(0, str(ROOT))
    import mlflow  # noqa: F401 - imported once, for every fork
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    import orchestrator.cli  # noqa: F401
    import trainables.data  # noqa: F401

    if threading.active_count() != 1:   # a fork copies one thread only: locks held by others stay held
        raise SystemExit(f"cli_forks: {threading.active_count()} threads after the imports; fork needs one")
    print(json.dumps({"ready": True}), flush=True)
    running, pending, buf, eof = {}, [], b"", False
    while not (eof and not pending and not running):
        # Requests in, without blocking on stdin while commands run: a 50 ms poll between reaps.
        if not eof and select.select([0], [], [], 0.05)[0]:
            chunk = os.read(0, 1 << 16)
            eof = not chunk
            buf += chunk
            *lines, buf = buf.split(b"\n")
            pending += [json.loads(line) for line in lines if line.strip()]
        elif eof and running:
            _reap(running, block=True)
        _reap(running, block=False)
        while pending and len(running) < jobs:
            req = pending.pop(0)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(req)
            running[pid] = req["id"]


def _reap(running, block):
    while running:
        pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        if pid == 0:
            return
        print(json.dumps({"id": running.pop(pid), "code": os.waitstatus_to_exitcode(status)}), flush=True)
        if block:
            return


class Forks:
    """The test side: a server process, and a ``run`` that any thread may call."""

    def __init__(self, log, jobs=3, python=sys.executable):
        """``log``: the server's own stderr (its imports'); what a command prints goes to its files."""
        import subprocess

        self.log = Path(log)
        self.proc = subprocess.Popen([python, __file__, str(jobs)], cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=open(self.log, "w"), text=True, bufsize=1)
        first = self.proc.stdout.readline()
        if json.loads(first or "{}").get("ready") is not True:
            raise RuntimeError(f"the CLI fork server did not start: {first!r}; {self.log.read_text()[-2000:]}")
        self.startup_stderr = self.log.read_text()   # what importing the libraries printed
        self.lock, self.done, self.codes, self.next_id = threading.Lock(), {}, {}, 0
        self.streams = self.log.parent / f"{self.log.stem}-streams"   # each command's stdout and stderr files
        self.streams.mkdir(exist_ok=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            msg = json.loads(line)
            self.codes[msg["id"]] = msg["code"]
            self.done[msg["id"]].set()
        for event in list(self.done.values()):   # the server died: nobody waits forever
            event.set()

    def run(self, argv, cwd, env, timeout=300):
        """(exit code, stdout, stderr) of ``dcgan-lab ARGV`` in ``cwd`` with exactly ``env``."""
        with self.lock:
            self.next_id += 1
            rid = self.next_id
            self.done[rid] = threading.Event()
            out, err = self.streams / f"{rid}.out", self.streams / f"{rid}.err"   # outside cwd: it stays as it was
            self.proc.stdin.write(json.dumps({"id": rid, "argv": list(argv), "cwd": str(cwd), "env": dict(env),
                                              "stdout": str(out), "stderr": str(err)}) + "\n")
            self.proc.stdin.flush()
        if not self.done[rid].wait(timeout) or rid not in self.codes:
            raise TimeoutError(f"dcgan-lab {' '.join(argv)}: no exit status in {timeout} s")
        return self.codes[rid], out.read_text(), err.read_text()

    def cli(self, *args, cwd=None, env=None, timeout=300):
        """``run_cli``'s contract (conftest), in a fork: ``env`` on top of this process's environment."""
        import subprocess

        code, out, err = self.run(args, cwd or ROOT, {**os.environ, **(env or {})}, timeout=timeout)
        return subprocess.CompletedProcess(list(args), code, out, err)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=120)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
