#!/usr/bin/env python3
"""usage: qemu-stream-load.py PARAMS_JSON GUEST_DIR STREAM RAM_OUT [--timeout SECONDS]

Loads a migration stream into a paused destination QEMU and saves its guest RAM:
runs the destination command line `dst_cmd` of PARAMS_JSON (the params.json recorded with
each QEMU migration stream, docs/data.md: `-incoming "exec:cat NAME.stream" -S`, console,
QMP socket and trace under NAME/, kernel and initrd under guest/) in a scratch folder laid
out as it expects (guest/ -> GUEST_DIR, NAME.stream -> STREAM), polls QMP `query-migrate`
until the incoming migration is `completed`, then `pmemsave`s guest RAM [0, ram_bytes) to
RAM_OUT and quits.
Exits non-zero, with QEMU's output, if the migration fails or does not complete in time.
Standard library only."""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time


class QMP:
    """A minimal QMP client over a unix socket."""

    def __init__(self, path, deadline):
        while True:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(60)
                sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no QMP socket at {path}")
                time.sleep(0.05)
        self.sock = sock
        self.file = sock.makefile("rwb", buffering=0)
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("QMP connection closed")
        return json.loads(line)

    def cmd(self, execute, **arguments):
        message = {"execute": execute}
        if arguments:
            message["arguments"] = arguments
        self.file.write((json.dumps(message) + "\n").encode())
        while True:
            reply = self._read()
            if "event" in reply:
                continue
            if "error" in reply:
                raise RuntimeError(f"{execute}: {reply['error']}")
            return reply.get("return")


def main():
    args = sys.argv[1:]
    timeout = 120.0
    if "--timeout" in args:
        i = args.index("--timeout")
        timeout = float(args[i + 1])
        del args[i : i + 2]
    if len(args) != 4:
        sys.exit(__doc__.splitlines()[0])
    params_path, guest_dir, stream, ram_out = args
    with open(params_path) as f:
        params = json.load(f)
    name = params["name"]
    dst_cmd = params["dst_cmd"]
    if dst_cmd[-3:] != ["-incoming", f"exec:cat {name}.stream", "-S"]:
        sys.exit(f"{params_path}: unexpected dst_cmd ending {dst_cmd[-3:]}")
    with tempfile.TemporaryDirectory(prefix="qemu-load-") as work:
        os.mkdir(os.path.join(work, name))
        os.symlink(os.path.abspath(guest_dir), os.path.join(work, "guest"))
        os.symlink(os.path.abspath(stream), os.path.join(work, f"{name}.stream"))
        log_path = os.path.join(work, "qemu.out")
        start = time.monotonic()
        with open(log_path, "wb") as log:
            qemu = subprocess.Popen(dst_cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT)
        try:
            qmp = QMP(os.path.join(work, name, "qmp.sock"), start + 30)
            while True:
                status = (qmp.cmd("query-migrate") or {}).get("status")
                if status == "completed":
                    break
                if status == "failed" or qemu.poll() is not None:
                    raise RuntimeError(f"incoming migration {status or 'ended'}")
                if time.monotonic() - start > timeout:
                    raise TimeoutError(f"incoming migration not completed after {timeout} s")
                time.sleep(0.1)
            loaded = time.monotonic() - start
            qmp.cmd("pmemsave", val=0, size=params["ram_bytes"], filename=os.path.abspath(ram_out))
            qmp.cmd("quit")
            qemu.wait(timeout=30)
            print(f"{name}: {os.path.basename(stream)} loaded in {loaded:.1f} s, "
                  f"guest RAM saved to {ram_out}")
        except Exception as err:
            time.sleep(0.2)
            code = qemu.poll()
            if code is None:
                qemu.kill()
                qemu.wait()
            else:
                err = f"QEMU exited with status {code} ({err})"
            with open(log_path, "rb") as log:
                sys.stderr.write(log.read()[-4000:].decode(errors="replace"))
            sys.exit(f"{name}: loading {stream} failed: {err}")


if __name__ == "__main__":
    main()
