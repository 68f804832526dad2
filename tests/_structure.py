"""The import rules of the house (docs/architecture.md#rules), read from the source with ``ast``.

``check(root)`` returns one line per violation, each naming the module and the import:

- ``cycle``: modules that import each other, directly or through others, at module level or inside
  a function (a lazy import is still a dependency);
- ``re-export``: a module other than a package ``__init__`` imports a css name it never uses itself
  (only to hand it on), a module imports a name from a module that does not define it, or a
  package ``__init__`` binds a submodule's name to something else;
- ``private``: a ``_name`` imported from, or read off, another css module;
- ``modality``: a core module (outside ``css/image``, ``css/pointcloud`` and the registry
  ``css/modality/registry.py``) imports a modality package, or tests or maps a modality's name or
  the name of a method a modality adds.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

MODALITY_PACKAGES = ("css.image", "css.pointcloud")
REGISTRY = "css.modality.registry"


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    is_package: bool
    defines: set[str] = field(default_factory=set)
    imported: dict[str, tuple[str, str]] = field(default_factory=dict)  # bound name -> (module, name)


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _defined(tree: ast.Module) -> set[str]:
    """Names a module binds itself at module level (functions, classes, assignments), also inside
    module-level if/try blocks."""
    names: set[str] = set()
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            stack.extend(node.body)
            stack.extend(getattr(node, "orelse", []))
            stack.extend(getattr(node, "finalbody", []))
            for handler in getattr(node, "handlers", []):
                stack.extend(handler.body)
    return names


def _source(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def load(root: Path, package: str = "css") -> dict[str, Module]:
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        name = _module_name(root, path)
        tree = ast.parse(path.read_text(), str(path))
        modules[name] = Module(name, path, tree, path.name == "__init__.py", _defined(tree))
    for module in modules.values():
        for node in module.tree.body:
            if isinstance(node, ast.ImportFrom):
                src = _source(module, node)
                for alias in node.names:
                    module.imported[alias.asname or alias.name] = (src, alias.name)
    return modules


def _imports(module: Module, modules: dict[str, Module]):
    """(line, imported module, name or None) of every import of a css module, lazy ones included."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            src = _source(module, node)
            if src not in modules:
                continue
            for alias in node.names:
                sub = f"{src}.{alias.name}"
                yield (node.lineno, sub, None) if sub in modules else (node.lineno, src, alias.name)


def cycles(modules: dict[str, Module]) -> list[str]:
    graph = {name: sorted({target for _, target, _ in _imports(m, modules)}) for name, m in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    out = []
    for component in found:
        inside = set(component)
        edges = [f"{m} -> {t} (line {line})" for m in component for line, t, _ in _imports(modules[m], modules)
                 if t in inside]
        out.append(f"cycle: {', '.join(sorted(set(edges)))}")
    return out


def _used(tree: ast.Module) -> set[str]:
    """Names a module reads: loaded names, and quoted names (string annotations and casts). The
    strings of an ``__all__`` list do not count: listing a name is handing it on."""
    listed = {id(c) for node in tree.body if isinstance(node, ast.Assign)
              and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
              for c in ast.walk(node.value)}
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            used.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in listed:
            used.update(re.findall(r"[A-Za-z_]\w*", node.value) if len(node.value) < 80 else ())
    return used


def reexports(modules: dict[str, Module]) -> list[str]:
    out = []
    for module in modules.values():
        if not module.is_package:
            used = _used(module.tree)
            for bound, (src, name) in module.imported.items():
                if src in modules and f"{src}.{name}" not in modules and bound not in used:
                    out.append(f"re-export: {module.name} imports {name} from {src} only to hand it on")
        for line, src, name in _imports(module, modules):
            target = modules[src]
            if name is None or name == "*" or target.is_package:
                continue
            if name not in target.defines or name in target.imported:
                out.append(f"re-export: {module.name} (line {line}) imports {name} from {src}, which does not "
                           f"define it")
    return out


def shadows(modules: dict[str, Module]) -> list[str]:
    """A package surface that binds a submodule's name to something else: ``from css.pkg import sub``
    would then give that thing instead of the module."""
    out = []
    for module in modules.values():
        if module.is_package:
            for bound, (src, name) in module.imported.items():
                if f"{module.name}.{bound}" in modules and f"{src}.{name}" != f"{module.name}.{bound}":
                    out.append(f"re-export: {module.name} binds {bound} to {src}.{name}, hiding its submodule "
                               f"{module.name}.{bound}")
    return out


def privates(modules: dict[str, Module]) -> list[str]:
    out = []
    for module in modules.values():
        for line, src, name in _imports(module, modules):
            if name and name.startswith("_") and not name.startswith("__") and src != module.name:
                out.append(f"private: {module.name} (line {line}) imports {name} from {src}")
        aliases = {bound for bound, (src, name) in module.imported.items() if f"{src}.{name}" in modules}
        for node in ast.walk(module.tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                out.append(f"private: {module.name} (line {node.lineno}) reads {node.value.id}.{node.attr}")
    return out


def _is_core(name: str) -> bool:
    return not (name == REGISTRY or any(name == p or name.startswith(p + ".") for p in MODALITY_PACKAGES))


def modality_mentions(modules: dict[str, Module], names: set[str]) -> list[str]:
    """``names``: the modalities' names and the methods the modalities add (presets and aliases)."""
    out = []
    for module in modules.values():
        if not _is_core(module.name):
            continue
        for line, src, _ in _imports(module, modules):
            if not _is_core(src) and src != REGISTRY:
                out.append(f"modality: {module.name} (line {line}) imports {src}; reach it through {REGISTRY}")
        for node in ast.walk(module.tree):
            consts = []
            if isinstance(node, ast.Compare):
                consts = [c for part in [node.left, *node.comparators] for c in ast.walk(part)]
            elif isinstance(node, ast.Dict):
                consts = [k for k in node.keys if k is not None]
            elif isinstance(node, ast.match_case):
                consts = list(ast.walk(node.pattern))
            for c in consts:
                value = getattr(c, "value", None)
                if isinstance(c, (ast.Constant, ast.MatchValue)) and isinstance(value, ast.Constant):
                    value = value.value
                if isinstance(value, str) and value in names:
                    out.append(f"modality: {module.name} (line {node.lineno}) tests or maps {value!r}; ask the "
                               f"modality (css.modality.protocol.Modality) instead")
    return sorted(set(out))


def users(root: Path, modules: dict[str, Module], folders: tuple[str, ...]) -> list[str]:
    """Code outside the package (tests, benchmarks, scripts) imports too: each name from the module
    that defines it (or a package's public surface), and no private name."""
    out = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            where = path.relative_to(root)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not (isinstance(node, ast.ImportFrom) and not node.level and node.module in modules):
                    continue
                target = modules[node.module]
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in modules:
                        continue
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        out.append(f"private: {where} (line {node.lineno}) imports {alias.name} from {node.module}")
                    elif not target.is_package and (alias.name not in target.defines or alias.name in target.imported):
                        out.append(f"re-export: {where} (line {node.lineno}) imports {alias.name} from "
                                   f"{node.module}, which does not define it")
    return out


def check(root: Path, modality_names: set[str], users_in: tuple[str, ...] = ()) -> list[str]:
    """Every violation in ``root/css``, and in the folders ``users_in`` that import from it."""
    modules = load(root)
    return (cycles(modules) + reexports(modules) + shadows(modules) + privates(modules)
            + modality_mentions(modules, modality_names) + users(root, modules, users_in))


PATH_REF = re.compile(r"(?<![\w/.])css/[\w/]+\.py")
DOTTED_REF = re.compile(r"(?<![\w/.])css(?:\.[A-Za-z_]\w*)+")


def stale_references(root: Path, texts: list[Path]) -> list[str]:
    """Module paths (``css/a/b.py``) and dotted names (``css.a.b``, ``css.a.b.name``) in ``texts``
    that name no module of ``root/css``, or a name its module neither defines nor imports."""
    modules = load(root)
    out = []
    for path in texts:
        text = path.read_text()
        where = path.relative_to(root)
        for match in PATH_REF.finditer(text):
            if not (root / match.group(0)).is_file():
                out.append(f"stale: {where} names {match.group(0)}, which does not exist")
        for match in DOTTED_REF.finditer(text):
            parts = match.group(0).split(".")
            found = [i for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in modules]
            top = modules[parts[0]]
            if found[0] == 1 and parts[1] not in top.defines and not parts[1].startswith("__"):
                out.append(f"stale: {where} names {match.group(0)}, which is no module of css")
                continue
            module = modules[".".join(parts[:found[0]])]
            rest = parts[found[0]:]
            if rest and rest[0] not in module.defines and rest[0] not in module.imported and not rest[0].startswith("__"):
                out.append(f"stale: {where} names {match.group(0)}, but {module.name} has no {rest[0]}")
    return sorted(set(out))
