"""The run report in the browser (docs/report.md): ``python -m css.report --html OUT RUN [RUN ...]``
writes ``OUT/index.html`` and its assets, which open offline."""

from css.htmlreport.page import write_report

__all__ = ["write_report"]
