"""Shared helpers for the benchmark scripts: timing, result tables and BENCHMARKS.md.

Each benchmark owns one section of BENCHMARKS.md at the repository root, between
the markers ``<!-- NAME -->`` and ``<!-- /NAME -->``. Rewriting one section keeps
the rest of the file as it is.
"""

import argparse
import datetime
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass

import torch
from torch import nn

BENCHMARKS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCHMARKS_DIR)
# The benchmarks import fit_sine.py from the repository root.
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import fit_sine  # noqa: E402

BENCHMARKS_MD = os.path.join(REPO_ROOT, "BENCHMARKS.md")
MIB = 1024 * 1024

MARKDOWN_HEADER = """\
# Benchmarks

Measured on a shared machine, so expect some spread between runs. Each section
is rewritten by the command it names; the other sections are kept.
"""


@dataclass
class Row:
    """One line of a result table, with every cell already formatted."""

    measure: str
    median: str
    spread: str = ""
    target: str = ""
    result: str = ""


TABLE_HEADINGS = Row("measure", "median", "min to max", "target", "result")


def time_tutorial_loop(model, x, y, epochs, lr):
    """Train model with the tutorial's plain loop; return (seconds, final loss).

    The loop is the tutorial's as written: default Adam and loss.item() every
    epoch. The clock covers building the optimizer and loss and training.
    """
    start = time.perf_counter()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.MSELoss()
    losses = []
    for _ in range(epochs):
        optimizer.zero_grad()
        prediction = model(x)
        loss = loss_fn(prediction, y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - start
    return seconds, losses[-1]


def positive_int(text):
    """Parse a command-line integer of at least 1 for argparse."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def print_progress(message):
    """Print a progress line to stderr, so that stdout holds only the results."""
    print(message, file=sys.stderr, flush=True)


def run_interleaved(tasks, repeats, warmup):
    """Run each task warmup times, then repeats rounds; return its samples.

    tasks maps a name to a callable that returns a measured sample. Warm-up
    samples are dropped. Each round starts one task later than the previous
    round, so that drift in the machine's load does not always hit the same task.
    Returns a dict from name to the list of samples of the timed rounds.
    """
    names = list(tasks)
    for _ in range(warmup):
        for name in names:
            tasks[name]()
    samples = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(tasks[name]())
    return samples


def seconds_row(measure, samples):
    """Return a Row with the median and range of samples given in seconds."""
    return Row(measure, f"{statistics.median(samples):.3f} s",
               f"{min(samples):.3f} to {max(samples):.3f} s")


def check_at_most(value, limit, unit=""):
    """Return 'met' when value <= limit, else how far above the limit it is."""
    if value <= limit:
        return "met"
    return f"missed by {value - limit:.2f}{unit}"


def format_text_table(rows):
    """Format rows as fixed-width text columns under a heading line."""
    table = [TABLE_HEADINGS, *rows]
    fields = ("measure", "median", "spread", "target", "result")
    widths = {field: max(len(getattr(row, field)) for row in table) for field in fields}
    lines = []
    for row in table:
        cells = [getattr(row, "measure").ljust(widths["measure"])]
        cells += [getattr(row, field).rjust(widths[field]) for field in fields[1:3]]
        cells += [getattr(row, field).ljust(widths[field]) for field in fields[3:]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_markdown_table(rows):
    """Format rows as a GitHub-flavoured Markdown table."""
    fields = ("measure", "median", "spread", "target", "result")
    lines = [
        "| " + " | ".join(getattr(TABLE_HEADINGS, field) for field in fields) + " |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        cells = [getattr(row, field).replace("|", "\\|") for field in fields]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_model():
    """Return the CPU's model name from /proc/cpuinfo, or platform.processor()."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def invoked_command():
    """Return the command line that started this script, relative to the repo root."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO_ROOT)
    return shlex.join(["python", script, *sys.argv[1:]])


def environment_lines(versions, start_load_average):
    """Return Markdown list items for the date, machine, load, versions and command.

    versions maps a package name to its version string. start_load_average is
    the os.getloadavg() triple taken when the benchmark started.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    start_loads = ", ".join(f"{load:.2f}" for load in start_load_average)
    end_loads = ", ".join(f"{load:.2f}" for load in os.getloadavg())
    version_text = ", ".join(f"{name} {version}" for name, version in versions.items())
    return [
        f"- Date: {now:%Y-%m-%d %H:%M} UTC",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores",
        f"- Load average (1, 5, 15 min): {start_loads} at start, {end_loads} at end",
        f"- Versions: {version_text}",
        f"- Command: `{invoked_command()}`",
    ]


def replace_section(text, name, body):
    """Return text with the section called name replaced by body, or appended.

    A section runs from the line ``<!-- name -->`` to the line ``<!-- /name -->``.
    Raises ValueError when only one of the two markers is present.
    """
    start_marker, end_marker = f"<!-- {name} -->", f"<!-- /{name} -->"
    section = f"{start_marker}\n{body.strip()}\n{end_marker}\n"
    start = text.find(start_marker)
    end = text.find(end_marker, start + 1) if start >= 0 else text.find(end_marker)
    if start < 0 and end < 0:
        separator = "" if not text or text.endswith("\n\n") else (
            "\n" if text.endswith("\n") else "\n\n")
        return text + separator + section
    if start < 0 or end < 0:
        raise ValueError(
            f"BENCHMARKS.md has only one of the markers {start_marker} and "
            f"{end_marker}; add the missing one or delete the partial section"
        )
    after = end + len(end_marker)
    if text.startswith("\n", after):
        after += 1
    return text[:start] + section + text[after:]


def write_markdown_section(name, body, path=BENCHMARKS_MD):
    """Rewrite the section called name in the Markdown file at path.

    The file is created with a short header when it does not exist. It is
    written to a temporary file and renamed, so readers never see half of it.
    """
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        text = MARKDOWN_HEADER
    text = replace_section(text, name, body)
    fit_sine.write_atomic(path, lambda file: file.write(text.encode("utf-8")))
