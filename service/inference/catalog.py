"""What the models folder holds now: the artifact directories to serve and a fingerprint of
each, so that a reload (SIGHUP to ``tagserve serve``) tells a new, changed or removed model
from one left alone. Only names and file stats are read: no file is opened."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tagserve.model.artifact_files import available
from tagserve.service.settings import Settings


def listed(settings: Settings) -> list[str]:
    """The model names to serve: ``TAGSERVE_MODELS``, else every artifact directory in the
    folder except hidden ones (a name starting with ``.`` is a copy still being written, to
    be renamed into place once complete)."""
    if settings.models:
        return list(settings.models)
    return [name for name in available(settings.models_dir) if not name.startswith(".")]


def artifact_path(settings: Settings, name: str) -> Path:
    """Where model ``name`` is read from. A symlink is followed once, here: a worker that is
    restarted later reloads the version it was started with, even after the link has been
    switched to a newer one (the switch is picked up by the next reload)."""
    path = settings.models_dir / name
    return path.resolve() if path.is_symlink() else path


def present(settings: Settings) -> dict[str, Path]:
    """The listed models whose directory is there now, each with the path to read it from."""
    paths = {name: artifact_path(settings, name) for name in listed(settings)}
    return {name: path for name, path in paths.items() if path.is_dir()}


def fingerprint(directory: Path) -> str:
    """Changes whenever a file of the artifact is written, replaced, added or removed (the
    size, mtime in ns and inode of every file), or the name points at another directory."""
    parts = [str(directory)]
    try:
        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_file():
                    stat = entry.stat()
                    parts.append(f"{entry.name}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}")
    except OSError as error:  # gone or unreadable since it was listed: read_info will say why
        parts.append(f"unreadable: {error}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
