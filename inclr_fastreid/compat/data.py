"""FastReID's data loading on a CPU, with errors that surface: DataLoaderX without CUDA, prefetch-thread
errors re-raised in the loop, dataset and image errors that name the path."""
from __future__ import annotations

import os

import torch

from ..errors import DatasetNotFoundError, UserError
from ._fix import fix as _fix


@_fix("DataLoaderX without CUDA (no stream, no device copy)")
def _dataloader_cpu() -> None:
    from torch.utils.data import DataLoader
    from fastreid.data import data_utils

    DLX, BG = data_utils.DataLoaderX, data_utils.BackgroundGenerator
    orig_init, orig_preload, orig_next, orig_run = DLX.__init__, DLX.preload, DLX.__next__, BG.run

    def __init__(self, local_rank, **kwargs):
        if torch.cuda.is_available():
            return orig_init(self, local_rank, **kwargs)
        if not torch.cuda.is_available():
            kwargs["pin_memory"] = False
        DataLoader.__init__(self, **kwargs)
        self.stream = None
        self.local_rank = local_rank

    def preload(self):
        if self.stream is not None:
            return orig_preload(self)
        self.batch = next(self.iter, None)

    def __next__(self):
        if self.stream is not None:
            return orig_next(self)
        batch = self.batch
        if batch is None:
            raise StopIteration
        self.preload()
        return batch

    def run(self):
        if torch.cuda.is_available():
            return orig_run(self)
        for item in self.generator:
            if self.exit_event.is_set():
                break
            self.queue.put(item)
        self.queue.put(None)

    def shutdown(self):
        # FastReID raises AttributeError when the loader was never iterated.
        if getattr(self, "iter", None) is not None:
            self._shutdown_background_thread()

    DLX.__init__, DLX.preload, DLX.__next__, BG.run = __init__, preload, __next__, run
    DLX.shutdown = shutdown


class _PrefetchError:
    """An exception raised in DataLoaderX's prefetch thread, queued for the consumer to re-raise."""

    def __init__(self, error: BaseException):
        self.error = error


@_fix("DataLoaderX: an error in the prefetch thread is raised in the loop, not a silent hang")
def _prefetch_errors() -> None:
    """FastReID's BackgroundGenerator thread dies on an exception (an unreadable image, a failing
    transform) without queueing its end marker, and the training loop then waits on the queue
    forever. Queue the exception instead and raise it in the thread that reads the loader."""
    from fastreid.data import data_utils

    BG, DLX = data_utils.BackgroundGenerator, data_utils.DataLoaderX
    orig_run = BG.run  # FastReID's, or the CPU one of _dataloader_cpu

    def run(self):
        try:
            orig_run(self)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
            self.queue.put(_PrefetchError(e))

    def next(self):
        item = self.queue.get()
        if item is None:
            raise StopIteration
        if isinstance(item, _PrefetchError):
            self.queue.put(item)  # a later read raises it again instead of blocking
            raise item.error
        return item

    def shutdown(self):
        it = getattr(self, "iter", None)  # FastReID raises AttributeError when never iterated
        if it is None or not isinstance(it, BG):
            return
        it.exit_event.set()
        while it.is_alive() or not it.queue.empty():  # drain, so a thread blocked in put() can end
            try:
                item = it.queue.get(timeout=0.1)
            except data_utils.queue.Empty:
                continue
            if item is None or isinstance(item, _PrefetchError):
                break
        it.join()

    BG.run, BG.next, BG.__next__, DLX.shutdown = run, next, next, shutdown


class UnreadableImageError(UserError, OSError):
    """An image file could not be decoded; the message names the file."""


@_fix("dataset errors name the path and the expected layout; unreadable images name the file")
def _dataset_errors() -> None:
    from fastreid.data import common, data_utils
    from fastreid.data.datasets import bases

    def check_before_run(self, required_files):
        from ..data.layouts import missing_dataset_message

        for fpath in [required_files] if isinstance(required_files, str) else required_files:
            if not os.path.exists(fpath):
                raise DatasetNotFoundError(missing_dataset_message(type(self).__name__, fpath))

    bases.Dataset.check_before_run = check_before_run
    orig_read = data_utils.read_image

    def read_image(file_name, format=None):
        try:
            return orig_read(file_name, format)
        except FileNotFoundError as e:
            raise DatasetNotFoundError(
                f"Image {file_name!r} does not exist (listed by the dataset, gone from disk?): restore it, "
                "or rebuild the dataset folder."
            ) from e
        except Exception as e:  # PIL raises OSError / SyntaxError / ValueError without the path
            raise UnreadableImageError(
                f"Cannot read image {file_name!r} ({type(e).__name__}: {e}). Remove or replace the file; "
                "to skip unreadable target images set INCLR.SKIP_BAD_IMAGES True."
            ) from e

    data_utils.read_image = read_image
    common.read_image = read_image
