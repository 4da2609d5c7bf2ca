"""Deprecated alias: the SFT-row parser moved to :mod:`ctxrely.data.sft` (reading and writing files
to :mod:`ctxrely.data.records`). Kept so old imports keep working; new code imports from there."""

from __future__ import annotations

from ctxrely.data.records import file_type_of, write_rows
from ctxrely.data.sft import (
    FORMATS,
    SFTData,
    SFTExample,
    TemplateMatch,
    as_examples,
    detect_format,
    example_hash,
    get_path,
    load_sft,
    match_template,
    parse_row,
    set_path,
)
from ctxrely.data.sft import read_sft_records as read_records

__all__ = ["FORMATS", "SFTData", "SFTExample", "TemplateMatch", "as_examples", "detect_format", "example_hash",
           "file_type_of", "get_path", "load_sft", "match_template", "parse_row", "read_records", "set_path",
           "write_rows"]
