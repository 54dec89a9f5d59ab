"""Host compatibility: the one place that makes FastReID 1.4.0 run on Python 3.11+, torch 2.x,
numpy 2.x and the CPU (docs/design.md §3, §9), without editing FastReID's installed files.

Applied once, on ``import inclr_fastreid``. Each fix is a small function named after the trap it
removes; CUDA code paths stay FastReID's own. ``applied_fixes()`` lists what was done.
"""
from __future__ import annotations

import collections
import collections.abc
import logging
import os
import sys
import types
from typing import Callable, List

import torch

from .errors import ConfigError, DatasetNotFoundError, UserError, debug_enabled
from .io import CheckpointLoadError, atomic_torch_save, atomic_write_text, safe_torch_load

logger = logging.getLogger(__name__)

_APPLIED: List[str] = []
_INSTALL_HINT = (
    "inclr-fastreid needs FastReID. Install it without its torch==1.13.1 pin, then its runtime needs:\n"
    "  pip install --no-deps fastreid==1.4.0\n"
    "  pip install faiss-cpu 'opencv-python-headless<5' scikit-learn 'tabulate<0.10' 'termcolor<3' "
    "tensorboard yacs\n"
    "or put an upstream FastReID checkout on PYTHONPATH (see README, 'Install')."
)


def _fix(name: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    def deco(fn: Callable[[], None]) -> Callable[[], None]:
        fn._compat_name = name  # type: ignore[attr-defined]
        return fn

    return deco


# --------------------------------------------------------------------------------------------
# Import-time traps: must run before any ``fastreid.data`` / ``fastreid.evaluation`` import.
# --------------------------------------------------------------------------------------------
@_fix("collections ABC aliases (removed in Python 3.10)")
def _collections_aliases() -> None:
    for name in ("Mapping", "MutableMapping", "Sequence", "Iterable", "Callable"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))


@_fix("torch._six (removed in torch 2.0)")
def _torch_six() -> None:
    if "torch._six" in sys.modules:
        return
    import importlib.util

    if importlib.util.find_spec("torch._six") is not None:  # pragma: no cover - torch < 2.0
        return
    six = types.ModuleType("torch._six")
    six.string_classes = (str, bytes)  # type: ignore[attr-defined]
    six.int_classes = int  # type: ignore[attr-defined]
    six.inf = float("inf")  # type: ignore[attr-defined]
    sys.modules["torch._six"] = six
    torch._six = six  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# Run-time traps.
# --------------------------------------------------------------------------------------------
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


@_fix("ReidEvaluator: no run-time Cython build, vectorised ranking on the CPU")
def _evaluator() -> None:
    from fastreid.evaluation import rank as fr_rank
    from fastreid.evaluation import rank_cylib, reid_evaluation

    def compile_helper() -> None:
        raise RuntimeError(
            "inclr-fastreid does not compile FastReID's Cython ranker inside site-packages; "
            "the vectorised evaluator in inclr_fastreid.evaluation.rank is used instead."
        )

    rank_cylib.compile_helper = compile_helper
    reid_evaluation.compile_helper = compile_helper
    reid_evaluation.ReidEvaluator._compile_dependencies = lambda self: None
    if not getattr(fr_rank, "IS_CYTHON_AVAI", False):
        from .evaluation.rank import evaluate_rank

        fr_rank.evaluate_rank = evaluate_rank
    try:
        from fastreid.evaluation import roc as fr_roc
    except ImportError:  # pragma: no cover - faiss missing
        return
    if not getattr(fr_roc, "IS_CYTHON_AVAI", False):
        from .evaluation.roc import evaluate_roc

        fr_roc.evaluate_roc = evaluate_roc


@_fix("no sys.exit in FastReID's result checks")
def _no_sys_exit() -> None:
    from fastreid.evaluation import testing

    orig = testing.verify_results

    def verify_results(cfg, results):
        try:
            return orig(cfg, results)
        except SystemExit as e:
            raise RuntimeError("FastReID's verify_results failed (TEST.EXPECTED_RESULTS); see log") from e

    testing.verify_results = verify_results


@_fix("DefaultTrainer creates OUTPUT_DIR before writing config.yaml")
def _output_dir() -> None:
    from fastreid.engine import defaults

    orig = defaults.DefaultTrainer.auto_scale_hyperparams

    def auto_scale_hyperparams(cfg, num_classes):
        from fastreid.utils import comm

        if comm.is_main_process() and cfg.OUTPUT_DIR:
            os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        return orig(cfg, num_classes)

    defaults.DefaultTrainer.auto_scale_hyperparams = staticmethod(auto_scale_hyperparams)


@_fix("DistributedDataParallel on CPU (no device_ids)")
def _ddp_cpu() -> None:
    from torch.nn.parallel import DistributedDataParallel
    from fastreid.engine import defaults

    class CPUAwareDDP(DistributedDataParallel):
        """FastReID passes ``device_ids=[local_rank]`` unconditionally; a CPU module takes none."""

        def __init__(self, module, device_ids=None, **kwargs):
            first = next(module.parameters(), None)
            if first is not None and first.device.type == "cpu":
                device_ids = None
            super().__init__(module, device_ids=device_ids, **kwargs)

    defaults.DistributedDataParallel = CPUAwareDDP


def _distributed_worker(local_rank, main_func, world_size, num_gpus_per_machine, machine_rank,
                        dist_url, args):
    """FastReID's worker, with gloo and no ``set_device`` where there is no GPU for this rank."""
    import torch.distributed as dist
    from fastreid.utils import comm

    import inclr_fastreid  # noqa: F401  (re-applies compat in the spawned process)

    use_cuda = torch.cuda.is_available() and torch.cuda.device_count() >= num_gpus_per_machine
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method=dist_url,
                            world_size=world_size, rank=global_rank)
    comm.synchronize()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    assert comm._LOCAL_PROCESS_GROUP is None
    num_machines = world_size // num_gpus_per_machine
    for i in range(num_machines):
        ranks_on_i = list(range(i * num_gpus_per_machine, (i + 1) * num_gpus_per_machine))
        pg = dist.new_group(ranks_on_i)
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = pg
    main_func(*args)


@_fix("launch(): gloo backend and no CUDA assertion on CPU machines")
def _launch_cpu() -> None:
    import importlib

    # Not ``from fastreid.engine import launch``: fastreid.engine re-exports the *function* launch
    # under that name, and patching an attribute of the function changes nothing.
    launch_mod = importlib.import_module("fastreid.engine.launch")
    launch_mod._distributed_worker = _distributed_worker


@_fix("AMPTrainer on torch.amp instead of the deprecated torch.cuda.amp")
def _amp() -> None:
    import time

    from fastreid.engine import train_loop

    AMP = train_loop.AMPTrainer
    orig_init = AMP.__init__

    def __init__(self, model, data_loader, optimizer, param_wrapper, grad_scaler=None):
        if grad_scaler is None:
            grad_scaler = torch.amp.GradScaler("cuda")
        orig_init(self, model, data_loader, optimizer, param_wrapper, grad_scaler=grad_scaler)

    def run_step(self):
        assert self.model.training, "[AMPTrainer] model was changed to eval mode!"
        if not torch.cuda.is_available():
            raise ConfigError("SOLVER.AMP.ENABLED needs CUDA; set SOLVER.AMP.ENABLED False on the CPU.")
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        with torch.autocast("cuda"):
            loss_dict = self.model(data)
            losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        self.grad_scaler.scale(losses).backward()
        self._write_metrics(loss_dict, data_time)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        if isinstance(self.param_wrapper, train_loop.ContiguousParams):
            self.param_wrapper.assert_buffer_is_valid()

    AMP.__init__, AMP.run_step = __init__, run_step


@_fix("contiguous-parameter optimizers keep their gradient buffer (torch 2 zero_grad sets None)")
def _contiguous_zero_grad() -> None:
    """FastReID packs parameters into one buffer whose gradients are views; torch 2's
    ``zero_grad()`` defaults to ``set_to_none=True``, which detaches those views, so
    ``optimizer.step()`` sees no gradient and nothing trains. Zero in place instead."""
    import fastreid.solver
    from fastreid.engine import defaults
    from fastreid.solver import build as solver_build

    orig = solver_build.build_optimizer

    def build_optimizer(cfg, model, contiguous=True):
        optimizer, params = orig(cfg, model, contiguous=contiguous)
        if contiguous:
            zero_grad = optimizer.zero_grad

            def zero_grad_in_place(set_to_none: bool = False) -> None:
                zero_grad(set_to_none=False)

            optimizer.zero_grad = zero_grad_in_place
        return optimizer, params

    solver_build.build_optimizer = build_optimizer
    fastreid.solver.build_optimizer = build_optimizer
    defaults.build_optimizer = build_optimizer


@_fix("CommonMetricPrinter: no ZeroDivisionError when two writes share an iteration (short epochs)")
def _metric_printer() -> None:
    from fastreid.utils import events

    orig = events.CommonMetricPrinter.write

    def write(self):
        try:
            return orig(self)
        except ZeroDivisionError:  # its own ETA estimate divides by (iteration - last iteration)
            self._last_write = None
            return orig(self)

    events.CommonMetricPrinter.write = write


@_fix("test-time re-ranking (TEST.RERANK) on the CPU: sparse k-reciprocal Jaccard, no GPU faiss")
def _rerank() -> None:
    """FastReID's ``build_dist(metric="jaccard")`` hard-codes GPU faiss and an old faiss API; the
    add-on's sparse Jaccard gives the same distances, and only the query x gallery block is dense."""
    import numpy as np
    from fastreid.evaluation import reid_evaluation
    from fastreid.utils import compute_dist

    orig = compute_dist.build_dist

    def build_dist(feat_1, feat_2, metric: str = "euclidean", **kwargs):
        if metric != "jaccard":
            return orig(feat_1, feat_2, metric, **kwargs)
        from .pseudo_labels import compute_jaccard_distance

        nq = feat_1.shape[0]
        feats = torch.cat((torch.as_tensor(feat_1), torch.as_tensor(feat_2)), dim=0).float().cpu()
        sparse = compute_jaccard_distance(feats.numpy(), k1=kwargs["k1"], k2=kwargs["k2"], max_distance=1.0)
        block = sparse[:nq, nq:].tocoo()  # pairs not stored share no support: d_J = 1
        dist = np.ones((nq, feats.shape[0] - nq), dtype=np.float32)
        dist[block.row, block.col] = block.data
        return dist

    compute_dist.build_dist = build_dist
    reid_evaluation.build_dist = build_dist


@_fix("Checkpointer: atomic saves, weights_only loads, missing MODEL.WEIGHTS is an error")
def _checkpointer() -> None:
    from fastreid.utils import checkpoint as ckpt

    C = ckpt.Checkpointer

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to {}".format(save_file))
        atomic_torch_save(data, save_file)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        atomic_write_text(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename)

    def _load_file(self, f: str):
        return safe_torch_load(f)

    orig_load = C.load

    def load(self, path: str, checkpointables=None):
        if path and not os.path.isfile(path) and "://" not in path:
            raise CheckpointLoadError(
                f"Checkpoint {path!r} does not exist (MODEL.WEIGHTS or --resume). Refusing to start "
                "from scratch silently: fix the path, or set MODEL.WEIGHTS '' to train from scratch."
            )
        return orig_load(self, path, checkpointables)

    C.save, C.tag_last_checkpoint, C._load_file, C.load = save, tag_last_checkpoint, _load_file, load


class UnreadableImageError(UserError, OSError):
    """An image file could not be decoded; the message names the file."""


@_fix("dataset errors name the path and the expected layout; unreadable images name the file")
def _dataset_errors() -> None:
    from fastreid.data import common, data_utils
    from fastreid.data.datasets import bases

    def check_before_run(self, required_files):
        from .data.real import missing_dataset_message

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


class _DropUserErrorTracebacks(logging.Filter):
    """Drops the log record of a user error that FastReID's train loop logs with its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, UserError) and not debug_enabled())


@_fix("train loop: no traceback in the log for user errors (the command prints one 'error:' line)")
def _train_loop_log() -> None:
    """FastReID's ``TrainerBase.train`` logs every exception with ``logger.exception`` before
    re-raising it: a NaN loss or an unreadable image showed a traceback although the entry point
    ends user errors with one line (``inclr_fastreid.errors``). Bugs keep theirs; INCLR_DEBUG=1
    keeps all."""
    train_loop_logger = logging.getLogger("fastreid.engine.train_loop")
    if not any(isinstance(f, _DropUserErrorTracebacks) for f in train_loop_logger.filters):
        train_loop_logger.addFilter(_DropUserErrorTracebacks())


_IMPORT_FIXES = [_collections_aliases, _torch_six]
_RUNTIME_FIXES = [_dataloader_cpu, _prefetch_errors, _evaluator, _no_sys_exit, _output_dir, _ddp_cpu, _launch_cpu, _amp,
                  _checkpointer, _dataset_errors, _contiguous_zero_grad,
                  _metric_printer, _rerank, _train_loop_log]


def applied_fixes() -> List[str]:
    """Names of the compatibility fixes applied in this process."""
    return list(_APPLIED)


def apply_host_compat() -> None:
    """Apply every fix once; idempotent. Raises ImportError with install steps if FastReID is absent."""
    if _APPLIED:
        return
    for fix in _IMPORT_FIXES:
        fix()
        _APPLIED.append(fix._compat_name)  # type: ignore[attr-defined]
    try:
        import warnings

        import fastreid  # noqa: F401
        import fastreid.data  # noqa: F401
        import fastreid.engine  # noqa: F401

        with warnings.catch_warnings():  # FastReID warns that its Cython ranker is absent: ours replaces it
            warnings.filterwarnings("ignore", message="Cython .* evaluation")
            import fastreid.evaluation  # noqa: F401
            import fastreid.evaluation.rank  # noqa: F401
            import fastreid.evaluation.roc  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "fastreid":
            raise ImportError(_INSTALL_HINT) from e
        raise
    for fix in _RUNTIME_FIXES:
        fix()
        _APPLIED.append(fix._compat_name)  # type: ignore[attr-defined]
