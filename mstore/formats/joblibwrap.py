"""joblib's `NumpyArrayWrapper` as `joblib.load` reads it: the wrapper's state after each BUILD, the
element size numpy gives a pickled dtype (never the size the pickled state claims), and the names of
the arrays joblib wrote into a file (for model-aware chunking and tensor views)."""

from __future__ import annotations

import re
from typing import Any

from .pickleops import MAX_CONTAINER, Global, NotPickle, Obj
from .picklescan import ArrayInfo, Scan

WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")  # the only array wrapper on the allowlist


def mentions_wrapper(value: Any, depth: int = 0) -> bool:
    if isinstance(value, Global):
        return value.pair == WRAPPER
    if depth < 3 and isinstance(value, (tuple, list)):
        return any(mentions_wrapper(v, depth + 1) for v in value)
    if depth < 3 and isinstance(value, dict):
        return any(mentions_wrapper(v, depth + 1) for v in value.values())
    return False


def wrapper_state(old: Any, state: Any) -> dict[Any, Any]:
    """A wrapper's attributes after one more BUILD: `__dict__.update(state)` then the slot state, as
    pickle's load_build does (the wrapper has no __setstate__)."""
    merged = dict(old) if isinstance(old, dict) else {}
    slots: Any = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slots = state
    for part in (state, slots):
        if part is None or part == {}:
            continue
        if not isinstance(part, dict) or len(part) >= MAX_CONTAINER:
            raise NotPickle("a NumpyArrayWrapper with a state the walker cannot read")
        merged.update(part)
    return merged


def dtype_name(dtype: Obj) -> str:
    code = dtype.args[0] if isinstance(dtype.args, tuple) and dtype.args else ""
    order = dtype.state[1] if isinstance(dtype.state, tuple) and len(dtype.state) > 1 else "|"
    if not isinstance(code, str) or not isinstance(order, str) or len(code) > 8 or order not in "<>|=":
        return ""
    return ("<" if order == "=" else order) + code


def name_arrays(scan: Scan) -> None:
    """Name each array by where it sits in what the pickle built: `steps[1][1].coef_` (attributes after a
    dot, list and dict items in brackets; a top-level dict's keys bare). Arrays found twice keep the first
    name; arrays nothing names (past a container's kept elements) are `array<N>` by file order."""
    seen: set[int] = set()
    todo: list[tuple[Any, str]] = [(root, "") for root in reversed(scan.roots)]
    budget = 1_000_000
    while todo and budget:
        budget -= 1
        value, path = todo.pop()
        if isinstance(value, (list, tuple, dict, Obj)):
            if id(value) in seen:
                continue
            seen.add(id(value))
        children: list[tuple[Any, str]] = []
        if isinstance(value, Obj):
            if isinstance(value.args, ArrayInfo):
                if not value.args.name:
                    value.args.name = path or "array"
                continue
            state = value.state
            if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
                state = state[0]  # (dict state, slot state)
            if isinstance(state, dict):
                children += [(v, f"{path}.{k}" if path else str(k)) for k, v in state.items()]
            if isinstance(value.args, (list, tuple)):
                children += [(v, f"{path}({i})") for i, v in enumerate(value.args)]
        elif isinstance(value, dict):
            children += [(v, f"{path}[{k!r}]" if path else str(k)) for k, v in value.items()]
        elif isinstance(value, (list, tuple)):
            children += [(v, f"{path}[{i}]") for i, v in enumerate(value)]
        todo.extend(reversed(children))
    names: set[str] = set()
    for i, info in enumerate(scan.found):
        name = info.name or f"array{i}"
        if name in names:
            name = f"{name}#{i}"
        names.add(name)
        info.name = name


# The element size numpy gives each dtype code a pickle may name (numpy ignores a pickled element size for
# these); S, U and V take theirs from the pickled state. Any other code is refused: the walker cannot know.
_CODE_SIZES = {
    **{f"f{n}": n for n in (2, 4, 8, 16)},
    **{f"i{n}": n for n in (1, 2, 4, 8)},
    **{f"u{n}": n for n in (1, 2, 4, 8)},
    **{f"c{n}": n for n in (8, 16, 32)},
    "b1": 1,
    "M8": 8,
    "m8": 8,
    "O8": 8,
}


_FLEXIBLE = re.compile(r"[SUV][0-9]{1,9}")


def element_size(dtype: Any) -> int | None:
    """The element size numpy gives a pickled numpy.dtype placeholder, None when its dtype has objects (the
    NPY_ITEM_HASOBJECT flag, which numpy takes from the pickled state); NotPickle when not known."""
    if not isinstance(dtype, Obj) or dtype.kind != "numpy.dtype" or not isinstance(dtype.args, tuple):
        raise NotPickle("a NumpyArrayWrapper whose dtype is not a numpy.dtype")
    code = dtype.args[0] if dtype.args else None
    if not isinstance(code, str) or not (code in _CODE_SIZES or _FLEXIBLE.fullmatch(code)):
        raise NotPickle(f"an array of dtype {str(code)[:20]!r}, whose size the walker does not know")
    state = dtype.state
    if state is None:
        hasobject = code == "O8"
        elsize = None
    elif (
        isinstance(state, tuple)
        and len(state) >= 8
        and state[0] in (3, 4)
        and isinstance(state[5], int)
        and isinstance(state[7], int)
    ):  # numpy takes hasobject from the flags and, for S / U / V, the element size from the state
        hasobject = bool(state[7] & 1)
        elsize = state[5]
    else:
        raise NotPickle(f"a dtype {code!r} with a state the walker does not model")
    if hasobject:
        return None
    if code in _CODE_SIZES:
        return _CODE_SIZES[code]
    size = elsize if elsize is not None and elsize >= 0 else int(code[1:])
    if size <= 0:
        raise NotPickle(f"an array of dtype {code!r} with element size {size}")
    return size
