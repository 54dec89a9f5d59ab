"""Where ``--config-file NAME`` is read from: a file at NAME wins; otherwise the configs shipped with the
package, so ``inclr-train --config-file configs/INCLR/duke2market.yml`` works from any folder.

A wheel carries the repository's ``configs/`` folder as ``inclr_fastreid/configs/`` (setup.py maps it
there); a source checkout or an editable install reads the repository's ``configs/`` itself. A
packaged config's ``_BASE_`` chain resolves inside the package, because FastReID reads ``_BASE_``
relative to the file that names it (``fastreid/config/config.py``, ``load_yaml_with_base``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

from .errors import ConfigError

_PACKAGE_DIR = Path(os.path.abspath(__file__)).parent
# In a wheel: the repository's configs/, copied into the package by setup.py
PACKAGED_CONFIG_DIR = _PACKAGE_DIR / "configs"
# In a source checkout or an editable install: the repository's own configs/ beside the package
SOURCE_CONFIG_DIR = _PACKAGE_DIR.parent / "configs"
# The file that marks a folder as this project's configs/ (every INCLR config's _BASE_ chain ends there)
_MARKER = "Base-INCLR.yml"
# The leading folder of the README's commands (``configs/INCLR/...``): names relative to the repository
_PREFIX = "configs"


def config_root() -> Optional[Path]:
    """The folder of the shipped configs: the packaged copy, else the checkout's ``configs/``; None
    when neither holds the project's configs (a package built without them)."""
    for root in (PACKAGED_CONFIG_DIR, SOURCE_CONFIG_DIR):
        if (root / _MARKER).is_file():
            return root
    return None


def shipped_configs(root: Optional[Path] = None) -> List[str]:
    """The shipped configs as ``configs/<dir>/<name>.yml`` names (the form ``--config-file`` takes),
    sorted; [] when there are none."""
    root = config_root() if root is None else Path(root)
    if root is None or not root.is_dir():
        return []
    return sorted(f"{_PREFIX}/{p.relative_to(root).as_posix()}" for p in root.rglob("*.yml") if p.is_file())


def _name_in_root(name: str) -> Optional[str]:
    """``name`` relative to the configs folder (a leading ``configs/`` dropped), or None when it is
    absolute or leaves the folder (``..``)."""
    if os.path.isabs(name):
        return None
    parts = Path(os.path.normpath(name)).parts
    if parts and parts[0] == _PREFIX:
        parts = parts[1:]
    if not parts or parts[0] == os.pardir:
        return None
    return os.path.join(*parts)


def resolve_config_file(name: str, root: Optional[Path] = None) -> str:
    """The file ``--config-file name`` means: ``name`` itself when it is a file (relative to the
    working folder, unchanged), else the shipped config of that name (absolute path). Raises
    ConfigError listing every place looked at when neither exists. ``root``: the shipped configs'
    folder (default :func:`config_root`)."""
    if not name:
        raise ConfigError("No --config-file given: pass a config file, e.g. --config-file "
                          "configs/INCLR/duke2market.yml (`inclr-train --list-configs` lists the shipped ones).")
    if os.path.isfile(name):
        return name
    looked = [os.path.abspath(name)]
    root = config_root() if root is None else Path(root)
    rel = _name_in_root(name)
    if root is not None and rel is not None:
        candidate = root / rel
        if candidate.is_file():
            return str(candidate)
        looked.append(str(candidate))
    where = "\n  ".join(looked)
    shipped = (f"`inclr-train --list-configs` lists the {len(shipped_configs(root))} configs shipped in {root}."
               if root is not None else "This installation ships no configs: pass the path of a config file.")
    raise ConfigError(f"Config file {name!r} not found. Looked at:\n  {where}\n{shipped}")
