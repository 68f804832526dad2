"""The results of a run (docs/results.md): results.json and the reference CSV (one writer each),
step and final summaries, the text table and the plot, and the metadata every file records."""

from css.results.csvfile import CsvRow, append_results_row, read_results_csv, summarize_csv_rows
from css.results.jsonfile import build_results, dumps_json, read_results_json
from css.results.metadata import build_metadata
from css.results.recording import read_entries, write_results
from css.results.summary import METRICS, OPTIONAL_METRICS, STEP_METRICS, final_summary, step_summary
from css.results.tables import format_table, plot_miou_per_step

__all__ = ["CsvRow", "METRICS", "OPTIONAL_METRICS", "STEP_METRICS", "append_results_row", "build_metadata",
           "build_results", "dumps_json", "final_summary", "format_table", "plot_miou_per_step", "read_entries",
           "read_results_csv", "read_results_json", "step_summary", "summarize_csv_rows", "write_results"]
