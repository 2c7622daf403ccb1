"""Run a command and print its wall time, peak resident memory and exit code.

Usage::

    python benchmarks/measure_process.py COMMAND [ARG ...]

Prints one JSON object to stdout, for example
``{"seconds": 3.2, "max_rss_bytes": 320000000, "exit_code": 0}``. The command's
own stdout and stderr both go to this script's stderr.

The benchmarks start the measured command through this small process rather
than directly. On Linux, ru_maxrss of a child also counts the memory of the
process that started it. The child begins as a fork or vfork of its parent,
and the kernel keeps the peak across exec. Started straight from a benchmark
that has imported torch and scikit-learn, every child reported that
benchmark's 410 MiB. This script imports only the standard library, so its
own peak stays far below that of the commands measured here.
"""

import json
import os
import subprocess
import sys
import time


def main(command):
    start = time.perf_counter()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                               stdout=sys.stderr, stderr=sys.stderr)
    # os.wait4 reaps the child and returns its resource usage, which
    # Popen.wait does not expose.
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in kilobytes on Linux and in bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    report = {
        "seconds": seconds,
        "max_rss_bytes": usage.ru_maxrss * scale,
        "exit_code": process.returncode,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: python benchmarks/measure_process.py COMMAND [ARG ...]",
              file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
