"""Markdown tables, in one place: reports, benchmarks and the CLI print them the same way."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]], *, aligned: bool = False) -> str:
    """A Markdown table with one line per row; cells are shown with str(), so format numbers first.

    `aligned` pads every column to its widest cell (numbers to the right) so that the table also reads
    as columns in a terminal; the Markdown it renders to is the same.
    """
    cells = [[str(cell) for cell in row] for row in rows]
    header = [str(name) for name in header]
    if any(len(row) != len(header) for row in cells):
        raise ValueError(f"every row needs {len(header)} cells ({', '.join(header)})")
    if not aligned:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])
    widths = [max(3, len(name), *(len(row[i]) for row in cells)) for i, name in enumerate(header)]

    def line(row: Sequence[str]) -> str:
        padded = [cell.rjust(width) if _is_number(cell) else cell.ljust(width) for cell, width in zip(row, widths)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in cells)])


def _is_number(cell: str) -> bool:
    try:
        float(cell.replace(",", ""))
    except ValueError:
        return cell in {"-", "—", "n/a"}
    return True


def records_table(records: Iterable[dict], columns: Sequence[str]) -> str:
    """A Markdown table of dict rows restricted to `columns` (floats with 4 significant digits; a
    missing key is an empty cell): the shape of every benchmark's and probe's result rows."""
    def cell(value: object) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    return markdown_table(columns, [[cell(record.get(column, "")) for column in columns] for record in records])
