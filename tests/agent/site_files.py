"""The reference site file, and variants of it for tests of what a bad file reports."""

from __future__ import annotations

from pathlib import Path

REFERENCE_FILE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "reference-site.toml"


def write_variant(directory: Path, *replacements: tuple[str, str]) -> Path:
    """Write the reference file to `directory` with the first occurrence of each `old` text
    replaced by `new`, and return its path."""
    text = REFERENCE_FILE.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, f"the reference file no longer contains {old!r}"
        text = text.replace(old, new, 1)
    path = directory / "site.toml"
    path.write_text(text, encoding="utf-8")
    return path
