"""The scripts of tools/, benchmarks/ and research/ stay thin (as detectron2's tools/): each imports the
installed package, never another script, never a private name of the package, and never edits
sys.path; tools/ keeps to what a user runs; every script is in its folder's README, and every script a
doc quotes exists."""
import ast
import glob
import os
import re
from typing import Dict, List

import pytest

from tests.helpers import ROOT

FOLDERS = ("tools", "benchmarks", "research")
MAX_TOOLS = 8  # tools/ is what a user runs; measurements go to benchmarks/, one-off checks to research/


def scripts(folder: str) -> List[str]:
    return sorted(glob.glob(os.path.join(ROOT, folder, "*.py")))


ALL = [p for f in FOLDERS for p in scripts(f)]
SCRIPT_NAMES = {os.path.splitext(os.path.basename(p))[0] for p in ALL}


def _private(dotted: str) -> bool:
    """A dotted name with a part that starts with one underscore (``_fix``, ``_Checked``), dunders aside."""
    return any(part.startswith("_") and not part.startswith("__") for part in dotted.split("."))


def violations(path: str) -> List[str]:
    """``file:line: what`` for each sys.path use, import of a script, or private name taken from inclr_fastreid."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    where = os.path.relpath(path, ROOT)
    out: List[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) \
                and node.value.id == "sys":
            out.append(f"{where}:{node.lineno}: uses sys.path (the package is installed: make setup)")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in SCRIPT_NAMES:
                    out.append(f"{where}:{node.lineno}: imports the script {alias.name}")
                elif alias.name.split(".")[0] == "inclr_fastreid" and _private(alias.name):
                    out.append(f"{where}:{node.lineno}: imports the private module {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                out.append(f"{where}:{node.lineno}: relative import (a script is no package)")
            elif module.split(".")[0] in SCRIPT_NAMES:
                out.append(f"{where}:{node.lineno}: imports from the script {module}")
            elif module.split(".")[0] == "inclr_fastreid":
                private = [a.name for a in node.names if _private(a.name)]
                if _private(module) or private:
                    out.append(f"{where}:{node.lineno}: takes a private name from inclr_fastreid: "
                               f"from {module} import {', '.join(private) or '...'}")
    return sorted(out, key=lambda v: int(v.split(":")[1]))


def test_the_three_folders_hold_scripts():
    for folder in FOLDERS:
        assert scripts(folder), f"{folder}/ has no script"
        assert not os.path.exists(os.path.join(ROOT, folder, "__init__.py")), f"{folder}/ is no package"


@pytest.mark.parametrize("path", ALL, ids=lambda p: os.path.relpath(p, ROOT))
def test_a_script_imports_the_package_only_through_its_public_names(path):
    assert violations(path) == []


def test_tools_holds_only_what_a_user_runs():
    names = [os.path.basename(p) for p in scripts("tools")]
    assert len(names) <= MAX_TOOLS, f"tools/ has {len(names)} scripts (at most {MAX_TOOLS}): {names}; " \
                                    "benchmarks go to benchmarks/, studies to research/"


def test_each_folder_readme_lists_its_scripts_and_no_other():
    for folder in FOLDERS:
        with open(os.path.join(ROOT, folder, "README.md")) as f:
            readme = f.read()
        listed = set(re.findall(r"^\| `(\w+\.py)` \|", readme, re.M))
        assert listed == {os.path.basename(p) for p in scripts(folder)}, folder


def test_every_script_the_docs_quote_exists():
    docs = [os.path.join(ROOT, "README.md")] + glob.glob(os.path.join(ROOT, "docs", "*.md")) + \
        [os.path.join(ROOT, f, "README.md") for f in FOLDERS]
    missing: Dict[str, List[str]] = {}
    for doc in docs:
        with open(doc) as f:
            text = f.read()
        for quoted in set(re.findall(r"(?<![\w/.])((?:%s)/\w+\.py)" % "|".join(FOLDERS), text)):
            if not os.path.isfile(os.path.join(ROOT, quoted)):
                missing.setdefault(os.path.relpath(doc, ROOT), []).append(quoted)
    assert missing == {}


def test_the_checks_catch_what_they_forbid(tmp_path):
    """The rules on a planted script: each forbidden line is reported with its line number."""
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\n"
                   "sys.path.insert(0, '..')\n"
                   "from benchmark_round import StageMemory\n"
                   "import run_demo\n"
                   "from inclr_fastreid.engine.trainer import INCLRTrainer, _CheckedAMPTrainer\n"
                   "from inclr_fastreid.compat._fix import patch\n"
                   "from . import helper\n"
                   "from __future__ import annotations\n"
                   "from inclr_fastreid.engine.trainer import build_step_trainer\n"
                   "from torch.utils._pytree import tree_flatten\n")
    found = [v.split(": ", 1)[0].rsplit(":", 1)[1] for v in violations(str(bad))]
    assert found == ["2", "3", "4", "5", "6", "7"]
