"""The models ``tagserve serve`` serves, and their reload from the folder on SIGHUP.

A reload compares the folder with what is served (a fingerprint of each directory's files,
:mod:`tagserve.service.inference.catalog`) and, beside the running models:

- loads each new or changed directory: checked by the torch-free reader, then its own model
  (a worker process, or a thread in the single-process mode) until it is ready;
- publishes the new set (:mod:`tagserve.service.runtime.model_feed`): every HTTP worker
  swaps to it, and the models it no longer serves finish their queued batches there;
- retires what nobody serves any more, once every HTTP worker has moved on.

A directory that cannot load is refused with one warning naming it and the error, and not
tried again until its files change; whatever it would have replaced goes on serving. The
default model (``TAGSERVE_DEFAULT_MODEL``) is never retired: when its directory goes, the
loaded version goes on serving, with one warning. One log line per change, and
``tagserve_model_reloads_total`` counts them by outcome.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from prometheus_client import Counter

from tagserve.model.artifact_files import ArtifactError, ArtifactInfo, read_info
from tagserve.service.errors import WorkerStartError
from tagserve.service.inference.catalog import artifact_path, fingerprint, present
from tagserve.service.inference.manifest import (
    MANIFEST_FILE,
    Manifest,
    ManifestModel,
    write_manifest,
)
from tagserve.service.inference.registry import (
    LoadedModel,
    batched,
    model_names,
    new_owner,
    thread_runner,
)
from tagserve.service.metrics import Metrics
from tagserve.service.runtime.model_feed import ModelFeed
from tagserve.service.settings import Settings

if TYPE_CHECKING:
    from tagserve.service.inference.owner import WorkerOwner

log = logging.getLogger(__name__)
# How long past the drain timeout a reload waits for every HTTP worker to move on before
# it retires the old models anyway (a hung worker is killed well before: the heartbeat).
APPLY_GRACE_S = 30.0
Candidate = tuple[Path, str, ArtifactInfo]  # where, fingerprint, card


@dataclass(eq=False)  # one model worker or thread each: compared by identity
class Held:
    """One served model: where it was loaded from, its fingerprint and card, and what runs
    it (a worker process's owner, or the in-process model)."""

    path: Path
    fingerprint: str
    info: ArtifactInfo
    owner: WorkerOwner | None = None
    loaded: LoadedModel | None = None

    @property
    def version(self) -> str:
        return self.info.card.version


class ModelFleet:
    """The served models and their reloads; the subclasses say how a model runs, how a new
    set is published and how an old model is retired."""

    manifest = ""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.models: dict[str, Held] = {}
        self.generation = 0
        self.published = multiprocessing.get_context("spawn").Value("q", 0, lock=False)
        # Whether every HTTP worker has applied a generation (set by whoever runs them).
        self.applied: Callable[[int], bool] = lambda generation: True
        self._metrics = metrics
        self._refused: dict[str, str] = {}  # name -> fingerprint of the refused files
        self._orphans: set[str] = set()  # default model served with its directory gone
        self._retiring: list[Held] = []
        self._wanted = threading.Event()
        self._lock = threading.Lock()
        self._closed = False
        self._outcomes = Counter(
            "tagserve_model_reloads",
            "changes made by reloads of the models folder (SIGHUP), by outcome",
            ["outcome"],
            registry=None if metrics.multiprocess else metrics.registry,
        )

    def feed(self) -> ModelFeed:
        """What an HTTP worker follows (:mod:`tagserve.service.runtime.model_feed`)."""
        return ModelFeed(self.manifest, self.published)

    def start(self) -> None:
        """Load every configured model, or raise :class:`ArtifactError` or
        :class:`WorkerStartError` naming the first that cannot load (none left running)."""
        paths = {name: artifact_path(self.settings, name) for name in model_names(self.settings)}
        marks = {name: fingerprint(path) for name, path in paths.items()}  # before reading
        candidates = {n: (p, marks[n], read_info(p)) for n, p in paths.items()}
        started = self._launch(candidates)
        problems = [result for result in started.values() if isinstance(result, str)]
        if problems:
            for result in started.values():
                if isinstance(result, Held):
                    self._close(result, timeout=0)
            raise WorkerStartError(problems[0])
        self.models = {n: h for n, h in started.items() if isinstance(h, Held)}
        self._publish()

    def request_reload(self, signum: int = 0, frame: FrameType | None = None) -> None:
        """Ask for a reload (a signal handler: it only sets a flag). Reloads asked for while
        one runs make one more after it."""
        self._wanted.set()

    def follow(self) -> None:
        """Reload, in a thread of its own, whenever asked, until :meth:`close`. The thread
        lives as long as the worker processes it starts (see :meth:`close`)."""
        threading.Thread(target=self._follow, name="model-reload", daemon=True).start()

    def _follow(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._closed:
                return
            log.info("SIGHUP: reloading the models in %s", self.settings.models_dir)
            try:
                self.reload()
            except Exception:
                log.exception("reload %d failed; the models served are unchanged", self.generation)

    def reload(self) -> None:
        """Rescan the folder and serve what it holds now (see the module's docstring)."""
        found = present(self.settings)
        keep: dict[str, Held] = {}
        candidates: dict[str, Candidate] = {}
        for name, path in found.items():
            mark, held = fingerprint(path), self.models.get(name)
            if held is not None:
                keep[name] = held  # until a new version is ready
                if held.fingerprint == mark:
                    continue
            if self._refused.get(name) == mark:
                continue  # refused before, and unchanged since
            try:
                candidates[name] = (path, mark, read_info(path))
            except ArtifactError as error:
                self._refuse(name, path, mark, str(error))
        changes = []
        for name, result in self._launch(candidates).items():
            path, mark, _ = candidates[name]
            if isinstance(result, str):
                self._refuse(name, path, mark, result)
                continue
            self._refused.pop(name, None)
            old = keep.get(name)
            keep[name] = result
            if old is None:
                changes.append(("loaded", f"model {name}: loaded {result.version} from {path}"))
            else:
                changes.append(
                    ("replaced", f"model {name}: replaced {old.version} by {result.version}")
                )
        for name, held in self.models.items():
            if name in found:
                continue
            if name == self.settings.default_model:
                keep[name] = held
                if name not in self._orphans:
                    self._orphans.add(name)
                    self._outcomes.labels(outcome="kept_default").inc()
                    log.warning(
                        "model %s: its directory is gone, but it is the default model "
                        "(TAGSERVE_DEFAULT_MODEL): still serving %s",
                        name,
                        held.version,
                    )
                continue
            changes.append(("retired", f"model {name}: retired {held.version} (directory gone)"))
        self._orphans -= set(found)
        self._refused = {n: mark for n, mark in self._refused.items() if n in found}
        retired = [h for n, h in self.models.items() if keep.get(n) is not h]
        with self._lock:
            if self._closed:
                for held in keep.values():
                    self._close(held, timeout=0)
                return
            self.models = dict(sorted(keep.items()))
            self.generation += 1
            self._publish()
            self._retiring += retired
        if not self._await_applied(self.generation):
            return  # closing: close() stops what is left
        for held in retired:
            self._close(held, timeout=5.0)
        with self._lock:
            self._retiring = [h for h in self._retiring if h not in retired]
        for outcome, line in changes:
            self._outcomes.labels(outcome=outcome).inc()
            log.info(line)
        served = ", ".join(f"{n} {h.version}" for n, h in sorted(self.models.items()))
        log.info("reload %d done: serving %s", self.generation, served)

    def _refuse(self, name: str, path: Path, mark: str, problem: str) -> None:
        self._refused[name] = mark
        self._outcomes.labels(outcome="refused").inc()
        held = self.models.get(name)
        still = f"still serving {name} {held.version}" if held else "not served"
        log.warning("model directory %s refused: %s (%s)", path, problem, still)

    def _await_applied(self, generation: int) -> bool:
        """Wait until every HTTP worker serves ``generation``; False if closed meanwhile."""
        deadline = time.monotonic() + self.settings.drain_timeout_s + APPLY_GRACE_S
        while not self.applied(generation):
            if self._closed:
                return False
            if time.monotonic() > deadline:
                log.warning(
                    "reload %d: an HTTP worker has not applied it within %.0f s; retiring the "
                    "old models anyway",
                    generation,
                    self.settings.drain_timeout_s + APPLY_GRACE_S,
                )
                break
            time.sleep(0.05)
        return True

    def close(self) -> None:
        """Stop every model this fleet started (after the HTTP side has stopped)."""
        with self._lock:
            self._closed = True
            everything = [*self.models.values(), *self._retiring]
        for held in everything:
            self._close(held, timeout=1.0)
        # Only now may the reload thread end: the kernel kills a worker process when the
        # thread that started it ends (the parent-death signal).
        self._wanted.set()

    def _launch(self, candidates: dict[str, Candidate]) -> dict[str, Held | str]:
        """Start each candidate; a started model, or why it could not start."""
        raise NotImplementedError

    def _publish(self) -> None:
        """Make :attr:`models` at :attr:`generation` what the HTTP workers serve."""
        raise NotImplementedError

    def _close(self, held: Held, timeout: float) -> None:
        """Stop what runs a model nobody serves any more."""


class ProcessFleet(ModelFleet):
    """Each model in a worker process; the set is published as the manifest in the run
    folder, and an old worker is stopped once every HTTP worker has moved on."""

    def __init__(self, settings: Settings, metrics: Metrics, run_dir: Path) -> None:
        super().__init__(settings, metrics)
        self.run_dir = run_dir
        self.manifest = str(run_dir / MANIFEST_FILE)

    def _launch(self, candidates: dict[str, Candidate]) -> dict[str, Held | str]:
        # Every worker starts at once: they load side by side.
        results: dict[str, Held | str] = {}
        owners: dict[str, WorkerOwner] = {}
        for name, (path, _, _) in candidates.items():
            try:
                owners[name] = new_owner(self.settings, self._metrics, name, path, self.run_dir)
            except Exception as error:  # e.g. a name too long for a socket path
                results[name] = f"{type(error).__name__}: {error}"
        for name, owner in owners.items():
            path, mark, info = candidates[name]
            try:
                owner.wait_ready()
            except WorkerStartError as error:
                results[name] = str(error)
            else:
                results[name] = Held(path, mark, info, owner=owner)
        return results

    def _publish(self) -> None:
        models = {}
        for name, held in self.models.items():
            assert held.owner is not None
            models[name] = ManifestModel(held.owner.address, str(held.path), held.info)
        write_manifest(Path(self.manifest), Manifest(self.generation, models))
        self.published.value = self.generation

    def _close(self, held: Held, timeout: float) -> None:
        if held.owner is not None:
            held.owner.close(timeout)


class ThreadFleet(ModelFleet):
    """Each model in a thread of this process (``TAGSERVE_MODEL_PROCESS=false``, one HTTP
    worker): the new set is handed over in memory, and the app closes an old model once its
    batcher has drained."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        super().__init__(settings, metrics)
        self._newest: tuple[int, dict[str, LoadedModel]] = (0, {})

    def source(self, current: dict[str, LoadedModel]) -> tuple[int, dict[str, LoadedModel]]:
        """The newest generation and its models (a :data:`~.model_feed.Source`)."""
        return self._newest

    def _launch(self, candidates: dict[str, Candidate]) -> dict[str, Held | str]:
        results: dict[str, Held | str] = {}
        for name, (path, mark, info) in candidates.items():
            try:
                runner = thread_runner(self.settings, path)
            except ArtifactError as error:
                results[name] = str(error)
            except Exception as error:
                results[name] = f"model {name}: {type(error).__name__}: {error}"
            else:
                loaded = batched(self.settings, self._metrics, name, info, runner)
                results[name] = Held(path, mark, info, loaded=loaded)
        return results

    def _publish(self) -> None:
        models = {n: h.loaded for n, h in self.models.items() if h.loaded is not None}
        self._newest = (self.generation, models)
        self.published.value = self.generation
