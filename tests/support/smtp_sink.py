"""A real SMTP server for the API tests (aiosmtpd, Debian's python3-aiosmtpd).

Every message it accepts is written whole to DIR as one file (written, then renamed), so a
test reads exactly what the server acknowledged. With --refuse CODE it answers every DATA
with that reply instead (e.g. "550 5.7.1 refused" for a permanent refusal).

    python3 smtp_sink.py --port PORT --dir DIR [--refuse "550 ..."]

Prints "ready" once it listens; runs until killed.
"""

import argparse
import os
import sys
import threading
import time
import uuid

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory, refuse):
        self.directory = directory
        self.refuse = refuse

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            return self.refuse
        name = "%d-%s.eml" % (time.time_ns(), uuid.uuid4().hex)
        partial = os.path.join(self.directory, "." + name + ".partial")
        with open(partial, "wb") as out:
            out.write(envelope.original_content or envelope.content)
            out.flush()
            os.fsync(out.fileno())
        os.rename(partial, os.path.join(self.directory, name))
        return "250 2.0.0 accepted"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--refuse", default="")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    controller = Controller(Sink(args.dir, args.refuse), hostname="127.0.0.1", port=args.port)
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    sys.exit(main())
