"""docs/config.md documents every key add_inclr_config adds, with the code's default, and names the shipped
configs that change it: a key without a row, a row without a key, a stale default or a stale config list fails."""
from __future__ import annotations

import ast
import fnmatch
import glob
import os
import re
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from fastreid.config import CfgNode, get_cfg

from inclr_fastreid.config import add_inclr_config, setup_cfg

from tests.helpers import ROOT

DOC = os.path.join(ROOT, "docs", "config.md")
CONFIG_DIR = os.path.join(ROOT, "configs")
#: the one key add_inclr_config adds outside the INCLR node
OUTSIDE_KEYS = ("MODEL.HEADS.NUM_PARTS",)

_KEY_CELL = re.compile(r"^`([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)+)`$")
_LITERAL_CELL = re.compile(r"^`(.+)`$")
_CONFIG_PATTERN = re.compile(r"`([^`]+\.yml)`")


def _leaves(node: CfgNode, prefix: str) -> Iterator[Tuple[str, Any]]:
    for name, value in node.items():
        if isinstance(value, CfgNode):
            yield from _leaves(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def _lookup(cfg: CfgNode, key: str) -> Any:
    value = cfg
    for part in key.split("."):
        value = value[part]
    return value


def added_keys(cfg: CfgNode) -> Dict[str, Any]:
    """Every leaf of ``cfg.INCLR`` and the keys of OUTSIDE_KEYS, with their values in ``cfg``."""
    keys = dict(_leaves(cfg.INCLR, "INCLR."))
    keys.update({k: _lookup(cfg, k) for k in OUTSIDE_KEYS})
    return keys


def parse_reference(text: str) -> List[Dict[str, str]]:
    """The rows of the doc's tables whose first cell is a backticked dotted key: key, default (the literal
    inside the backticks of the second cell), and the shipped-configs cell (the last one)."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        m = _KEY_CELL.match(cells[0]) if cells else None
        if not m:
            continue
        assert len(cells) == 5, f"docs/config.md: the row of {m.group(1)} has {len(cells)} cells, not 5: {line}"
        lit = _LITERAL_CELL.match(cells[1])
        assert lit, f"docs/config.md: the default of {m.group(1)} is not one backticked literal: {cells[1]!r}"
        rows.append({"key": m.group(1), "default": lit.group(1), "configs": cells[4]})
    return rows


def missing_and_stale(rows: List[Dict[str, str]], keys) -> Tuple[List[str], List[str]]:
    """(keys without a row, rows naming no key), sorted."""
    documented = {r["key"] for r in rows}
    return sorted(set(keys) - documented), sorted(documented - set(keys))


def same_value(a: Any, b: Any) -> bool:
    """Equal and of the same type, element by element (yacs refuses a value of another type, e.g. 0 for 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return a == b


def wrong_defaults(rows: List[Dict[str, str]], defaults: Dict[str, Any]) -> List[str]:
    out = []
    for r in rows:
        if r["key"] not in defaults:
            continue
        try:
            doc = ast.literal_eval(r["default"])
        except (ValueError, SyntaxError):
            out.append(f"{r['key']}: {r['default']!r} is not a Python literal")
            continue
        if not same_value(doc, defaults[r["key"]]):
            out.append(f"{r['key']}: documented {doc!r}, code {defaults[r['key']]!r}")
    return out


@pytest.fixture(scope="module")
def defaults() -> Dict[str, Any]:
    return added_keys(add_inclr_config(get_cfg()))


@pytest.fixture(scope="module")
def rows() -> List[Dict[str, str]]:
    with open(DOC, encoding="utf-8") as f:
        return parse_reference(f.read())


def test_every_added_key_has_a_row(rows, defaults):
    missing, _ = missing_and_stale(rows, defaults)
    assert not missing, f"keys added by add_inclr_config without a row in docs/config.md: {missing}"


def test_every_row_names_an_added_key_once(rows, defaults):
    _, stale = missing_and_stale(rows, defaults)
    assert not stale, f"rows of docs/config.md naming no key of add_inclr_config: {stale}"
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)), f"keys with more than one row: {sorted({k for k in keys if keys.count(k) > 1})}"


def test_documented_defaults_are_the_code_defaults(rows, defaults):
    assert not wrong_defaults(rows, defaults)


def test_the_checks_see_a_removed_row_a_foreign_row_and_a_wrong_default(defaults):
    """The parse is not vacuous: a planted omission, an unknown key and a changed default are each reported."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    line = next(ln for ln in text.splitlines() if ln.startswith("| `INCLR.KAPPA` |"))
    assert missing_and_stale(parse_reference(text.replace(line + "\n", "")), defaults) == (["INCLR.KAPPA"], [])
    planted = text.replace(line, line.replace("`INCLR.KAPPA`", "`INCLR.KAPA`"))
    assert missing_and_stale(parse_reference(planted), defaults) == (["INCLR.KAPPA"], ["INCLR.KAPA"])
    assert wrong_defaults(parse_reference(text.replace(line, line.replace("`0.2`", "`0.25`"))), defaults) == [
        "INCLR.KAPPA: documented 0.25, code 0.2"]
    # a float key documented as an int is a different value to yacs
    assert wrong_defaults([{"key": "INCLR.LGMR.MIN_AGREEMENT", "default": "0", "configs": "—"}], defaults)
    assert len(parse_reference(text)) == len(defaults) > 40


def _shipped_differences(defaults: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """{config path relative to configs/: {key: merged value}} for the keys a shipped config changes."""
    out = {}
    for path in sorted(glob.glob(os.path.join(CONFIG_DIR, "**", "*.yml"), recursive=True)):
        cfg = setup_cfg(path, ["MODEL.DEVICE", "cpu"])
        values = added_keys(cfg)
        out[os.path.relpath(path, CONFIG_DIR)] = {k: v for k, v in values.items() if not same_value(v, defaults[k])}
    return out


def test_shipped_configs_column_names_every_config_that_changes_a_key(rows, defaults):
    """Each config whose merged value of a key differs from the default matches a pattern in that key's row,
    and each pattern there matches at least one config that does change it (no stale file names)."""
    patterns = {r["key"]: _CONFIG_PATTERN.findall(r["configs"]) for r in rows}
    changed = _shipped_differences(defaults)
    assert any(changed.values())  # e.g. Base-INCLR.yml turns INCLR.CLUSTER.ENABLED on
    unnamed = [f"{cfg}: {key} = {value!r}" for cfg, diff in changed.items() for key, value in diff.items()
               if not any(fnmatch.fnmatchcase(cfg, p) for p in patterns.get(key, []))]
    assert not unnamed, f"docs/config.md does not name these configs in the key's row: {unnamed}"
    stale = [f"{key}: {p}" for key, pats in patterns.items() for p in pats
             if not any(key in diff and fnmatch.fnmatchcase(cfg, p) for cfg, diff in changed.items())]
    assert not stale, f"patterns in docs/config.md matching no config that changes the key: {stale}"
