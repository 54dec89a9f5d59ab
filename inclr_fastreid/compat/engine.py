"""FastReID's engine on torch 2 and the CPU: OUTPUT_DIR, DDP/launch without CUDA, torch.amp, the
contiguous optimizer's gradients, the metric printer, atomic checkpoints, user errors in the log."""
from __future__ import annotations

import logging
import os

import torch

from ..errors import ConfigError, UserError, debug_enabled
from ..io import CheckpointLoadError, atomic_torch_save, atomic_write_text, safe_torch_load
from ._fix import fix as _fix


logger = logging.getLogger("inclr_fastreid.compat")


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


@_fix("AMPTrainer on torch.amp instead of the deprecated torch.cuda.amp, on the model's device")
def _amp() -> None:
    """FastReID's AMPTrainer with ``torch.amp``: float16 autocast and loss scaling on CUDA; on the CPU
    bfloat16 autocast (float32's exponent range: no scaling), so an AMP config also runs, and is
    tested, without a GPU."""
    import time

    from fastreid.engine import train_loop
    from torch import nn

    AMP = train_loop.AMPTrainer
    orig_init = AMP.__init__

    def _device_type(model) -> str:
        net = model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model
        first = next(net.parameters(), None)
        return first.device.type if first is not None else "cpu"

    def __init__(self, model, data_loader, optimizer, param_wrapper, grad_scaler=None):
        if grad_scaler is None:
            grad_scaler = torch.amp.GradScaler("cuda", enabled=_device_type(model) == "cuda")
        orig_init(self, model, data_loader, optimizer, param_wrapper, grad_scaler=grad_scaler)

    def run_step(self):
        assert self.model.training, "[AMPTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        device = _device_type(self.model)
        with torch.autocast(device, dtype=torch.float16 if device == "cuda" else torch.bfloat16):
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
