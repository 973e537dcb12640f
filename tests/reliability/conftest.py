"""Reliability suites: bad input, faults, overload, soak, security, each against real processes.

Each suite records its figures (reliability_helpers.record/summarise); they are printed at the end
of the run and written to reliability-results/<suite>.json (gitignored), for the README to quote.
"""

import pytest
from reliability_helpers import FIGURES, SUMMARIES, write_results


def pytest_sessionfinish(session: pytest.Session) -> None:
    if FIGURES:
        write_results()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not SUMMARIES:
        return
    terminalreporter.section("reliability figures")
    for suite, lines in SUMMARIES.items():
        for line in lines:
            terminalreporter.write_line(f"{suite}: {line}")
    terminalreporter.write_line("(JSON in reliability-results/)")
