"""The house keeps its shape (docs/architecture.md#rules): no import cycles, no re-exports outside a
package ``__init__``, no private name across modules, and no modality inside the core. The checks
read the imports with ``ast`` (tests/_structure.py); each rule is first shown to catch a small tree
that breaks it."""

from pathlib import Path
from textwrap import dedent

import pytest

from _structure import check, stale_references
from css.modality.registry import method_extensions, modality_names

ROOT = Path(__file__).resolve().parents[1]


def _modality_words() -> set[str]:
    words = set(modality_names())
    for ext in method_extensions():
        words.update(ext.presets)
        words.update(ext.aliases)
    return words


def test_the_modality_words_are_the_registry_and_its_methods():
    words = _modality_words()
    assert {"image", "pointcloud", "3dpc-ciss", "lwf-3dpc", "ciss"} <= words
    assert "lgkd" not in words and "plop" not in words  # core presets are no modality's


def test_css_keeps_the_rules():
    problems = check(ROOT, _modality_words(), users_in=("tests", "benchmarks", "scripts"))
    assert problems == [], "\n".join(problems)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / "css" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dedent(text))
    for folder in {p.parent for p in (tmp_path / "css").rglob("*.py")} | {tmp_path / "css"}:
        (folder / "__init__.py").touch()
    return tmp_path


@pytest.mark.parametrize("files, expected", [
    ({"a.py": "from css.b import f\n", "b.py": "def f():\n    from css.a import g\n    return g\n"},
     "cycle: css.a -> css.b (line 1), css.b -> css.a (line 2)"),
    ({"a.py": "from css.b import f\n", "b.py": "def f(): ...\n"}, "re-export: css.a imports f from css.b only"),
    ({"a.py": "from css.b import f\nf()\n", "b.py": "from css.c import f\n", "c.py": "def f(): ...\n"},
     "re-export: css.a (line 1) imports f from css.b, which does not define it"),
    ({"a.py": "from css.b import f\n__all__ = ['f']\n", "b.py": "def f(): ...\n"},
     "re-export: css.a imports f from css.b only"),
    ({"pkg/__init__.py": "from css.pkg.ident import ident\n", "pkg/ident.py": "def ident(): ...\n"},
     "re-export: css.pkg binds ident to css.pkg.ident.ident, hiding its submodule css.pkg.ident"),
    ({"a.py": "from css.b import _f\n_f()\n", "b.py": "def _f(): ...\n"},
     "private: css.a (line 1) imports _f from css.b"),
    ({"a.py": "from css import b\nb._f()\n", "b.py": "def _f(): ...\n"}, "private: css.a (line 2) reads b._f"),
    ({"a.py": "def f():\n    from css.pointcloud.x import g\n    return g\n", "pointcloud/x.py": "def g(): ...\n"},
     "modality: css.a (line 2) imports css.pointcloud.x"),
    ({"a.py": "def f(cfg):\n    return cfg.modality == 'pointcloud'\n"}, "modality: css.a (line 2) tests or maps 'pointcloud'"),
    ({"a.py": "def f(m):\n    return m.name in ('x', '3dpc-ciss')\n"}, "modality: css.a (line 2) tests or maps '3dpc-ciss'"),
    ({"a.py": "TABLE = {'image': 1}\n"}, "modality: css.a (line 1) tests or maps 'image'"),
])
def test_each_rule_catches_a_tree_that_breaks_it(tmp_path, files, expected):
    problems = check(_tree(tmp_path, files), {"image", "pointcloud", "3dpc-ciss"})
    assert any(p.startswith(expected) for p in problems), problems


def test_tests_import_each_name_from_where_it_lives(tmp_path):
    root = _tree(tmp_path, {"a.py": "from css.b import f\nf()\n", "b.py": "def f(): ...\ndef _g(): ...\n"})
    (root / "tests").mkdir()
    (root / "tests" / "test_x.py").write_text("from css.a import f\nfrom css.b import _g\nfrom css.b import f\n")
    assert check(root, set(), users_in=("tests",)) == [
        "re-export: tests/test_x.py (line 1) imports f from css.a, which does not define it",
        "private: tests/test_x.py (line 2) imports _g from css.b"]


def test_the_rules_allow_what_the_house_does(tmp_path):
    """A package __init__ gathers names; the registry imports the branches lazily; a branch names
    itself; a module imports a sibling submodule and a name its defining module has."""
    root = _tree(tmp_path, {
        "pkg/__init__.py": "from css.pkg.a import f\n__all__ = ['f']\n",
        "pkg/a.py": "def f(): ...\n",
        "modality/registry.py": "def get(name):\n    if name == 'pointcloud':\n        from css.pointcloud.m import M\n"
                                "        return M()\n",
        "pointcloud/m.py": "class M:\n    def own(self, cfg):\n        return cfg.modality == 'pointcloud'\n",
        "user.py": "from css.pkg.a import f\nfrom css import errors\nf()\nerrors.x\n",
        "errors.py": "x = 1\n",
    })
    assert check(root, {"image", "pointcloud"}) == []


def _documents() -> list[Path]:
    """What names modules for a reader: the docs, the README, the developer notes and css's own
    comments and docstrings."""
    return [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", ROOT / "DEVELOPERS.md",
            *sorted((ROOT / "css").rglob("*.py"))]


def test_every_module_a_document_names_exists():
    problems = stale_references(ROOT, _documents())
    assert problems == [], "\n".join(problems)


def test_a_stale_module_reference_is_found(tmp_path):
    root = _tree(tmp_path, {"a.py": "def f(): ...\n", "b/c.py": "X = 1\n"})
    doc = root / "notes.md"
    doc.write_text("css/a.py and css.a.f and css.b.c.X are here; css/old.py, css.old, css.a.g and "
                   "css.b.c.Y are not.\n")
    assert stale_references(root, [doc]) == [
        "stale: notes.md names css.a.g, but css.a has no g",
        "stale: notes.md names css.b.c.Y, but css.b.c has no Y",
        "stale: notes.md names css.old, which is no module of css",
        "stale: notes.md names css/old.py, which does not exist"]


def test_a_deprecation_raised_from_css_is_an_error_and_elsewhere_a_warning():
    """pyproject's filterwarnings (and strict_warnings in spawned processes): css's own
    DeprecationWarning / FutureWarning fail the test, another package's stay warnings."""
    import warnings

    from _spawn import strict_warnings

    for category in (DeprecationWarning, FutureWarning):
        with pytest.raises(category):
            warnings.warn_explicit("old API", category, "css/nn.py", 1, module="css.nn")
        with pytest.warns(category):
            warnings.warn_explicit("old API", category, "x.py", 1, module="cssx.other")
        with warnings.catch_warnings():
            warnings.resetwarnings()
            strict_warnings()
            with pytest.raises(category):
                warnings.warn_explicit("old API", category, "css/a.py", 1, module="css.a")
            with pytest.raises(category):
                warnings.warn_explicit("old API", category, "css/__init__.py", 1, module="css")
            warnings.warn_explicit("old API", category, "torch/x.py", 1, module="torch.x")  # no error
