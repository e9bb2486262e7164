"""Rules of the code base that a test can enforce: import direction and the device seam."""

import ast
import inspect
import pathlib

import shendu

ROOT = pathlib.Path(shendu.__file__).parent

# Imports flow one way: backend <- autograd <- ops <- functional <- nn <- models <- cli; optim needs only
# autograd; nothing imports cli. Each package lists the shendu packages it must not import at module level.
FORBIDDEN = {
    "backend.py": {"autograd", "ops", "functional", "nn", "models", "cli", "optim", "train", "data", "vision"},
    "autograd": {"ops", "functional", "nn", "models", "cli", "optim", "train", "data", "vision"},
    "ops": {"functional", "nn", "models", "cli", "optim", "train", "data", "vision"},
    "functional.py": {"nn", "models", "cli", "optim", "train", "data", "vision"},
    "nn": {"models", "cli", "train", "data", "vision"},  # nn.utils re-exports optim's clipping
    "optim": {"ops", "functional", "nn", "models", "cli", "train", "data", "vision"},
    "models": {"cli", "train"},
    "classic": {"nn", "models", "cli", "optim", "train", "data", "vision"},
}


def _top_level_shendu_imports(path):
    """shendu subpackages imported at module level (imports inside functions are deferred on purpose)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            parts = n.split(".")
            if parts[0] == "shendu" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_imports_flow_one_way():
    bad = []
    for key, forbidden in FORBIDDEN.items():
        target = ROOT / key
        files = [target] if target.suffix == ".py" else sorted(target.rglob("*.py"))
        for f in files:
            hit = _top_level_shendu_imports(f) & forbidden
            if hit:
                bad.append(f"{f.relative_to(ROOT)} imports {sorted(hit)}")
    for f in ROOT.rglob("*.py"):
        rel = f.relative_to(ROOT)
        if "cli" not in rel.parts and rel.name != "__main__.py" and "cli" in _top_level_shendu_imports(f):
            bad.append(f"{f.relative_to(ROOT)} imports cli")
    assert not bad, "\n".join(bad)


def test_function_code_uses_the_array_module_seam():
    """forward/backward of every op must not name numpy directly (they use xp = get_array_module(...))."""
    import shendu.functional  # noqa: F401 - loads every op family
    import shendu.vision.ops  # noqa: F401 - and the vision ops

    offenders = []
    for cls in _all_subclasses(shendu.Function):
        if not cls.__module__.startswith(("shendu.ops", "shendu.vision.ops")):
            continue
        for meth in ("forward", "backward"):
            fn = cls.__dict__.get(meth)
            if fn is None:
                continue
            src = inspect.getsource(fn)
            tree = ast.parse(inspect.cleandoc("\n" + src) if src.startswith(" ") else src)
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "np":
                    offenders.append(f"{cls.__module__}.{cls.__name__}.{meth} uses np.{node.attr}")
                    break
    assert not offenders, "\n".join(offenders)


def _all_subclasses(cls):
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def test_tensor_methods_resolve():
    """Every method the Tensor delegates to shendu.functional exists there."""
    from shendu.autograd.tensor import _DELEGATED

    missing = [n for n in _DELEGATED if not hasattr(shendu.functional, n)]
    assert not missing, f"Tensor methods without a functional op: {missing}"
