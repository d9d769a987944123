"""Models run in a thread of this process: the single-process mode
(``TAGSERVE_MODEL_PROCESS=false``, one HTTP worker) and tests. The one place outside the
model worker where the service loads torch."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from tagserve.model.tagged import SentenceTagger, TaggedSentence
from tagserve.service.settings import Settings


class ThreadTagger:
    """An in-process model (a :class:`~tagserve.model.predictor.Predictor`) run in one thread
    of its own, awaitable from the event loop; the in-process counterpart of a model worker
    (``alive`` and ``close`` too)."""

    alive = True

    def __init__(self, tagger: SentenceTagger, name: str) -> None:
        self._tagger = tagger
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{name}")

    async def predict_async(self, sentences: list[list[str]]) -> list[TaggedSentence]:
        """Tag a batch in the model's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._tagger.predict, sentences)

    def close(self, timeout: float = 0.0) -> None:
        """Stop the thread once the batch it runs, if any, is done."""
        self._executor.shutdown(wait=True)


def thread_taggers(settings: Settings, names: list[str]) -> dict[str, ThreadTagger]:
    """A predictor per model, each in a thread of its own."""
    import torch

    from tagserve.model.artifact import load
    from tagserve.model.predictor import Predictor
    from tagserve.model.quantize import with_precision

    torch.set_num_threads(settings.torch_threads)
    taggers = {}
    for name in names:
        bundle = load(settings.models_dir / name, settings.device)
        bundle = with_precision(bundle, settings.precision_for(name, bundle.card.precision))
        predictor = Predictor(
            bundle, batch_size=settings.max_batch_size, cache_words=settings.cache_words
        )
        taggers[name] = ThreadTagger(predictor, name)
    return taggers
