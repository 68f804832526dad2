"""The repository documents itself: every citation of a docs page resolves, and nothing points outside.

- (a) A citation ``docs/<name>.md`` or ``docs/<name>.md#<anchor>`` anywhere in a tracked text file
  (code comments, docstrings, messages, configs, tests, scripts, the README) names a file of docs/,
  and the anchor is a heading of that file (GitHub's slug rules) or an explicit ``<a id="...">``.
- (b) No tracked file refers to the project's working notes, which do not ship
  (the strings are assembled below so that this file does not match itself).
- (c) Relative links in docs/*.md and README.md (``[text](file.md#x)``) resolve the same way.

The slug function is checked on worked examples, and the checkers on small made-up inputs, so that
a checker that finds nothing cannot pass by accident.
"""

from __future__ import annotations

import os
import re
import subprocess
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Built from pieces: written out whole, this file would report itself.
FORBIDDEN = [
    "../" + "shared",
    "spec" + " 2d",
    "spec" + " 3d",
    "design" + ".md",
    "reference" + "-2d",
    "reference" + "-3d",
]

SCANNED_PREFIXES = ("css/", "tests/", "configs/", "scripts/", "benchmarks/", "docs/", ".ci/")
SCANNED_FILES = ("README.md", "DEVELOPERS.md", "Makefile", "pyproject.toml")
SKIPPED_DIRS = {".git", ".venv", "runs", "data", "__pycache__", ".pytest_cache", "pretrained", "results"}

CITATION = re.compile(r"(?<![\w/.-])docs/([\w.-]+?\.md)(?:#([\w-]+))?", re.UNICODE)
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
ANCHOR_TAG = re.compile(r"<a\s+(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
FENCE = re.compile(r"^ {0,3}(```|~~~)")


# ------------------------------------------------------------------------------------------------
# GitHub heading slugs


def _heading_text(markdown: str) -> str:
    """The text GitHub renders for a heading: links keep their text, inline code its content,
    HTML tags disappear."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    text = re.sub(r"<[^>]+>", "", text)
    return text.replace("`", "")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, every character that is not a letter, mark, number,
    connector (``_``), space or hyphen dropped, each space turned into a hyphen."""
    text = _heading_text(heading).strip().lower()
    kept = [ch for ch in text
            if ch in " -" or unicodedata.category(ch)[0] in "LMN" or unicodedata.category(ch) == "Pc"]
    return "".join(kept).replace(" ", "-")


def _outside_fences(text: str):
    """(line number, line) of every line outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.splitlines(), start=1):
        m = FENCE.match(line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif m.group(1) == fence:
                fence = None
            continue
        if fence is None:
            yield number, line


def anchors_of(text: str) -> set[str]:
    """Every anchor of a markdown text: heading slugs (a repeated slug gets -1, -2, ...) and explicit
    ``<a id>`` / ``<a name>`` anchors."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in _outside_fences(text):
        found.update(ANCHOR_TAG.findall(line))
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


# ------------------------------------------------------------------------------------------------
# The files to scan


def tracked_files() -> list[Path]:
    """Files git tracks (plus new ones it does not ignore); without git, a walk of the same folders."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                             cwd=ROOT, capture_output=True, check=True).stdout.decode()
        names = [n for n in out.split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        names = []
        for top, dirs, files in os.walk(ROOT):
            dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
            names += [os.path.relpath(os.path.join(top, f), ROOT) for f in files]
    names = [n.replace(os.sep, "/") for n in names]
    return [ROOT / n for n in sorted(set(names))
            if (n.startswith(SCANNED_PREFIXES) or n in SCANNED_FILES) and (ROOT / n).is_file()]


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # binary files hold no citations


_ANCHOR_CACHE: dict[Path, set[str] | None] = {}


def _anchors_of_file(path: Path) -> set[str] | None:
    if path not in _ANCHOR_CACHE:
        text = read_text(path) if path.is_file() else None
        _ANCHOR_CACHE[path] = anchors_of(text) if text is not None else None
    return _ANCHOR_CACHE[path]


def check_target(doc: Path, anchor: str | None, label: str) -> str | None:
    """Why ``doc#anchor`` does not resolve (None when it does); ``label`` is how it was cited."""
    rel = doc.resolve().relative_to(ROOT).as_posix() if doc.resolve().is_relative_to(ROOT) else str(doc)
    anchors = _anchors_of_file(doc)
    if anchors is None:
        return f"{label}: {rel} does not exist"
    if anchor and anchor not in anchors:
        return f"{label}: {rel} has no section #{anchor}"
    return None


def citation_problems(text: str, where: str) -> list[str]:
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        for m in CITATION.finditer(line):
            name, anchor = m.group(1), m.group(2)
            cited = f"docs/{name}" + (f"#{anchor}" if anchor else "")
            problem = check_target(ROOT / "docs" / name, anchor, f"{where}:{number} cites {cited}")
            if problem:
                problems.append(problem)
    return problems


def link_problems(text: str, path: Path) -> list[str]:
    """Relative links of a markdown file that do not resolve (inline code and fences skipped)."""
    where = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
    problems = []
    for number, line in _outside_fences(text):
        line = re.sub(r"`[^`]*`", "", line)
        for m in LINK.finditer(line):
            target = m.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                continue  # http:, https:, mailto:
            file_part, _, anchor = target.partition("#")
            dest = path if not file_part else (path.parent / file_part)
            label = f"{where}:{number} links to {target}"
            if file_part and not file_part.endswith(".md"):
                if not dest.exists():
                    problems.append(f"{label}: {file_part} does not exist")
                continue
            problem = check_target(dest, anchor or None, label)
            if problem:
                problems.append(problem)
    return problems


def forbidden_problems(text: str, where: str) -> list[str]:
    lowered = text.lower()
    problems = []
    for word in FORBIDDEN:
        start = lowered.find(word)
        if start >= 0:
            number = lowered.count("\n", 0, start) + 1
            problems.append(f"{where}:{number} mentions {word!r}")
    return problems


# ------------------------------------------------------------------------------------------------
# The slug rules and the checkers on worked examples


@pytest.mark.parametrize("heading, expected", [
    ("Corrected by fixed", "corrected-by-fixed"),
    ("LAS/LAZ", "laslaz"),
    ("Point-cloud data: raw layouts, preparation and the block format",
     "point-cloud-data-raw-layouts-preparation-and-the-block-format"),
    ("The 3DPC-CISS method on point clouds (`css.pointcloud.ciss`)",
     "the-3dpc-ciss-method-on-point-clouds-csspointcloudciss"),
    ("bg, old & new", "bg-old--new"),                  # '&' goes, both spaces stay
    ("What `protocol` means", "what-protocol-means"),
    ("snake_case stays", "snake_case-stays"),
    ("S⁰ and S¹ orders", "s⁰-and-s¹-orders"),           # superscript digits are numbers
    ("[Local POD](methods.md#pod) factors", "local-pod-factors"),
    ("  Trailing spaces  ", "trailing-spaces"),
    ("hIoU = 2·old·new / (old + new)", "hiou--2oldnew--old--new"),
])
def test_slug_follows_github_rules(heading, expected):
    assert slug(heading) == expected


def test_anchors_number_duplicates_and_skip_code():
    text = "\n".join([
        "# Notes",
        "## Notes",
        "### Notes ###",
        "```yaml",
        "# not a heading",
        "```",
        '<a id="kept-by-both"></a>',
        "#no-space is not a heading",
    ])
    assert anchors_of(text) == {"notes", "notes-1", "notes-2", "kept-by-both"}


def test_checkers_find_broken_citations_links_and_words(tmp_path):
    # A citation of a section that exists, one of a missing section, one of a missing file (the
    # broken ones are assembled, as the repository scan below reads this file too).
    d = "docs" + "/"
    assert citation_problems(f"see {d}tasks.md#label-maps", "x.py") == []
    assert citation_problems(f"see {d}tasks.md#no-such-section", "x.py") == [
        f"x.py:1 cites {d}tasks.md#no-such-section: {d}tasks.md has no section #no-such-section"]
    assert citation_problems(f"a\nsee {d}nowhere.md.", "x.py") == [
        f"x.py:2 cites {d}nowhere.md: {d}nowhere.md does not exist"]
    # Markdown links, relative to the linking file; code spans and fences are not links.
    page = tmp_path / "page.md"
    page.write_text("# Top\n[a](#top) [b](#gone) `[c](#gone)`\n```\n[d](#gone)\n```\n[e](other.md)\n"
                    "[f](https://example.org/x.md#y) [g](missing.py)\n")
    (tmp_path / "other.md").write_text("# Other\n")
    assert link_problems(page.read_text(), page) == [
        f"{page}:2 links to #gone: {page} has no section #gone",
        f"{page}:7 links to missing.py: missing.py does not exist"]
    assert forbidden_problems("line\nsee " + FORBIDDEN[3].upper(), "y.md") == [
        f"y.md:2 mentions {FORBIDDEN[3]!r}"]


# ------------------------------------------------------------------------------------------------
# The repository


def test_scan_covers_the_repository():
    files = {p.relative_to(ROOT).as_posix() for p in tracked_files()}
    for expected in ("README.md", "css/methods/objective.py", "configs/voc/base.yaml", "docs/protocol.md",
                     "tests/test_docs.py", "scripts/data/prepare_voc.sh", "benchmarks/RESULTS.md"):
        assert expected in files


def test_every_cited_docs_section_exists():
    problems = []
    for path in tracked_files():
        text = read_text(path)
        if text is not None:
            problems += citation_problems(text, path.relative_to(ROOT).as_posix())
    assert problems == [], "\n".join(problems)


def test_no_file_refers_to_the_working_notes():
    problems = []
    for path in tracked_files():
        text = read_text(path)
        if text is not None:
            problems += forbidden_problems(text, path.relative_to(ROOT).as_posix())
    assert problems == [], "\n".join(problems)


def test_links_in_docs_and_readme_resolve():
    pages = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
    problems = []
    for page in pages:
        problems += link_problems(page.read_text(encoding="utf-8"), page)
    assert problems == [], "\n".join(problems)
