"""Run a stage's units on dask: client factory, skip-if-done, failures, progress, run.json.

``get_client`` starts a ``LocalCluster`` of worker processes (one thread each) or attaches to
an existing scheduler (``--scheduler tcp://host:8786`` or ``H36M_NVF_SCHEDULER``). With a
remote cluster, WORK and the release must be on a file system every worker sees at the same
paths.

``run_stage`` plans the units, compares each with its done-record (``pipeline.store``),
submits the ones to run, and waits for them, showing progress (``progress.ProgressBoard``:
units, items inside units reported by the workers as dask events, rate and ETA; a bar on a
terminal, a line every N seconds in logs). A unit that raises is recorded as failed with a one-line reason (report and
``WORK/<stage>/failures.json``); the rest go on. A worker that dies mid-unit (killed, out of
memory) is replaced by its nanny and the scheduler reruns the unit there (up to
``distributed.scheduler.allowed-failures`` times, default 3): the run does not fail.

Ctrl-C: local workers ignore SIGINT (the terminal sends it to the whole process group; a worker
dying of it would print its own traceback and the nanny's warnings); the client cancels the
units, and ``run_stage`` raises ``StageInterrupted`` with what finished (kept, with their
done-records: a rerun resumes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.device import cuda_device_count
from common.hashing import sha256_json
from pipeline.orchestration.progress import ProgressBoard, progress_mode
from pipeline.orchestration.summaries import format_results, stage_results
from pipeline.stages.base import Stage, Unit, config_to_json
from pipeline.stages.progress import reporting
from pipeline.store import (
    FingerprintCache,
    WorkDir,
    atomic_write_json,
    read_done_record,
    read_json,
    remove_done_record,
    unit_status,
    write_done_record,
)

log = logging.getLogger(__name__)

SCHEDULER_ENV = "H36M_NVF_SCHEDULER"

# --------------------------------------------------------------------------- clients


def local_core_count() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


LOCAL_WORKER_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(64 << 20),
    "NUMBA_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "OPENCV_LOG_LEVEL": "ERROR",
    "OPENCV_FFMPEG_LOGLEVEL": "8",
}
"""Environment of local workers (one thread each), set before each worker process starts.

* ``MALLOC_MMAP_THRESHOLD_``: dask sets MALLOC_TRIM_THRESHOLD_, which also pins glibc's mmap
  threshold at 128 kB (glibc otherwise raises it, up to 32 MB, as big buffers are freed): then
  every larger buffer (the fitter's LM Jacobians of a 512-frame batch are 5-30 MB, a JPEG) is a
  fresh mmap whose pages fault in again on every use. Measured on a 400-frame pose unit in a
  worker thread: 4 MB 2.0 s system time and 1.1 M page faults, 16 MB 0.8 s, 32 MB 0.4 s, 64 MB
  0.2 s and 0.1 M (glibc's own dynamic threshold: 0.5 s); a shape unit 1.9 s -> 0.1 s. 64 MB is
  the size of a thread arena's heap, i.e. every buffer an arena can hold comes from it; dask's
  trim threshold still returns freed memory at the top of each heap to the system.
* ``NUMBA_NUM_THREADS`` (and the BLAS / OpenMP pools, torch's included): one per worker. Each
  worker process otherwise starts a pool as wide as the machine, and two workers on two cores
  oversubscribe them (measured: the SDF of a sample 39 -> 88 ms, its votes 2.4 -> 89 ms).
* ``OPENCV_LOG_LEVEL``, ``OPENCV_FFMPEG_LOGLEVEL`` (8 = FFmpeg's AV_LOG_FATAL): no raw library
  warnings ("moov atom not found", "can't open/read file"); the code checks every open and
  read itself and reports a failure as one line naming the file (``QUIET_NATIVE_ENV``).

glibc and numba read these once, at process start, so they must be in the environment the
worker process is spawned with: distributed's ``LocalCluster(env=...)`` applies its variables
only after the worker has started. ``worker_spawn_environment`` passes them through
``distributed.nanny.pre-spawn-environ`` instead. Variables already exported win (a user's
``NUMBA_NUM_THREADS=2`` stays)."""


QUIET_NATIVE_ENV = {k: LOCAL_WORKER_ENV[k] for k in ("OPENCV_LOG_LEVEL", "OPENCV_FFMPEG_LOGLEVEL")}
"""The part of LOCAL_WORKER_ENV the CLI process sets for itself too (before OpenCV loads)."""


@contextlib.contextmanager
def worker_spawn_environment(env: Mapping[str, str] = LOCAL_WORKER_ENV) -> Iterator[dict]:
    """Within: local dask workers started here are spawned with ``env`` (where this process's
    own environment does not set a variable already) on top of dask's pre-spawn defaults.

    distributed's nanny writes these variables into this process's ``os.environ`` before it
    spawns a worker; they are restored on exit, so this process keeps its own thread pools and
    allocator settings (a nanny that later restarts a dead worker sets them again).
    """
    import dask

    merged = {**dask.config.get("distributed.nanny.pre-spawn-environ", default={}), **env}
    saved = {k: os.environ.get(k) for k in merged}
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": merged}):
            yield {k: os.environ.get(k, str(v)) for k, v in merged.items()}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def get_client(
    scheduler: str | None = None,
    workers: int | None = None,
    resources: Mapping[str, float] | None = None,
    timeout: str = "10s",
):
    """A dask ``Client``: attached to ``scheduler`` (or $H36M_NVF_SCHEDULER) or a new LocalCluster.

    The local cluster has ``workers`` processes (default: one per core) with one thread each,
    spawned with ``LOCAL_WORKER_ENV`` (one-thread numba / BLAS pools, the allocator setting).
    ``resources`` are given to every local worker; by default, when CUDA is present, the first
    ``cuda_device_count()`` workers get ``{"GPU": 1}`` each, so GPU units (submitted with
    ``resources={"GPU": 1}``) run one per device. A local cluster is kept as
    ``client._h36m_nvf_cluster``: ``open_client`` closes it with the client.
    Raises ConnectionError when the scheduler cannot be reached within ``timeout``.
    """
    from distributed import Client

    scheduler = scheduler or os.environ.get(SCHEDULER_ENV) or None
    if scheduler:
        try:
            return Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as e:
            raise ConnectionError(f"cannot reach the dask scheduler at {scheduler} ({e})") from e
    from distributed import LocalCluster

    debug = logging.getLogger().isEnabledFor(logging.DEBUG)
    with worker_spawn_environment(), sigint_ignored():  # workers inherit SIG_IGN
        cluster = LocalCluster(
            n_workers=workers or local_core_count(),
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # a free port: concurrent clusters do not collide on 8787
            # a worker's own log lines (heartbeats failing while the cluster shuts down, ...)
            # are no message for the user: units report their failures as results; -v shows them
            silence_logs=logging.ERROR if debug else logging.CRITICAL + 1,
            resources=dict(resources) if resources else None,
        )
    client = Client(cluster)
    client._h36m_nvf_cluster = cluster  # closed with the client by open_client
    client.register_plugin(_ignore_sigint_plugin(), name="h36m-nvf-ignore-sigint")  # restarted workers too
    if resources is None:
        gpus = cuda_device_count()
        if gpus:
            addresses = sorted(client.scheduler_info(n_workers=-1)["workers"])[:gpus]
            client.run(_give_gpu, workers=addresses)
    return client


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Within (main thread only): SIGINT is ignored, so processes spawned here inherit SIG_IGN."""
    try:
        saved = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to inherit from here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, saved)


def _ignore_sigint_plugin():
    """A WorkerPlugin (distributed refuses duck-typed ones; imported only when a cluster starts)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class IgnoreSigint(WorkerPlugin):
        """The worker process ignores SIGINT (Ctrl-C is the client's to handle)."""

        idempotent = True

        def setup(self, worker) -> None:
            with contextlib.suppress(ValueError):  # only possible in the worker's main thread
                signal.signal(signal.SIGINT, signal.SIG_IGN)

    return IgnoreSigint()


async def _give_gpu(dask_worker) -> None:
    await dask_worker.set_resources(GPU=1)


def close_client(client) -> None:
    """Close a client from ``get_client`` and, for a local one, its cluster.

    Errors while shutting down (a worker already gone, a comm closed under a heartbeat) are
    logged at debug level: the run's results are known by then, and a shutdown race must not
    print a traceback after them.
    """
    cluster = getattr(client, "_h36m_nvf_cluster", None)
    with sigint_ignored(), quiet_loggers(*SHUTDOWN_LOGGERS):  # a second Ctrl-C must not
        # leave worker processes behind; "Worker process still alive after 4 s, killing" is how
        # a busy worker (an interrupted unit) ends, and a comm closed under a heartbeat is a
        # shutdown race: neither is news for the user, and their tracebacks least of all
        for close in (client.close, *((cluster.close,) if cluster is not None else ())):
            try:
                close()
            except Exception as e:  # noqa: BLE001 (any shutdown error: the work is done)
                log.debug("while closing the dask cluster: %s", one_line(e))


@contextlib.contextmanager
def open_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """``get_client`` as a context manager that closes it (and a local cluster) on exit."""
    client = get_client(scheduler, workers)
    try:
        yield client
    finally:
        close_client(client)


def dashboard_line(client) -> str:
    """"dask: 4 workers, dashboard http://127.0.0.1:40123/status" (no dashboard: said so)."""
    try:
        n = len(client.scheduler_info(n_workers=-1)["workers"])
    except Exception:  # noqa: BLE001 (a line for the user; never fail the run for it)
        n = "?"
    link = getattr(client, "dashboard_link", None)
    return f"dask: {n} workers, dashboard {link or '(none)'}"


def announce_on_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


SHUTDOWN_LOGGERS = ("distributed", "asyncio", "tornado")
"""Loggers that only show errors while a cluster shuts down (unless -v)."""


@contextlib.contextmanager
def quiet_loggers(*names: str) -> Iterator[None]:
    """Within: the loggers ``names`` show only critical errors (unless -v, i.e. debug logging)."""
    loggers = [logging.getLogger(n) for n in names]
    saved = [lg.level for lg in loggers]
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        for lg in loggers:
            lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.setLevel(level)


class LazyClient:
    """A client factory for ``run_stage``: connects (or starts a cluster) on first call only,
    then announces the cluster and its dashboard URL (``announce``, default: stderr)."""

    def __init__(self, scheduler: str | None = None, workers: int | None = None,
                 announce=announce_on_stderr) -> None:
        self.scheduler, self.workers, self.announce = scheduler, workers, announce
        self.client = None

    def __call__(self):
        if self.client is None:
            self.client = get_client(self.scheduler, self.workers)
            if self.announce is not None:
                self.announce(dashboard_line(self.client))
        return self.client

    def close(self) -> None:
        if self.client is not None:
            close_client(self.client)
            self.client = None

    def __enter__(self) -> LazyClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- reports


@dataclass
class UnitOutcome:
    """What happened (or would happen) to one unit."""

    key: str
    status: str
    """Before the run: "missing", "stale (why)", "forced" or "up to date"."""
    result: str
    """"done", "skipped", "failed", or with --dry-run "would run" / "would skip"."""
    reason: str = ""
    """One line, for failures."""
    seconds: float = 0.0
    info: dict = field(default_factory=dict)


@dataclass
class StageReport:
    """The outcome of one stage run (or dry run)."""

    stage: str
    outcomes: list[UnitOutcome]
    dry_run: bool = False
    seconds: float = 0.0
    results: dict = field(default_factory=dict)
    """What the stage produced (``summaries.stage_results``: frames and errors, samples, ...)."""

    def _with(self, result: str) -> list[UnitOutcome]:
        return [o for o in self.outcomes if o.result == result]

    @property
    def done(self) -> list[UnitOutcome]:
        return self._with("done")

    @property
    def skipped(self) -> list[UnitOutcome]:
        return self._with("skipped")

    @property
    def failed(self) -> list[UnitOutcome]:
        return self._with("failed")

    @property
    def interrupted(self) -> list[UnitOutcome]:
        return self._with("interrupted")

    def format(self) -> str:
        """The dry-run listing or the summary table, as text."""
        return self.format_dry_run() if self.dry_run else self.format_summary()

    def format_dry_run(self) -> str:
        would = sum(o.result == "would run" for o in self.outcomes)
        lines = [f"{self.stage}: {len(self.outcomes)} units, {would} would run, "
                 f"{len(self.outcomes) - would} up to date"]
        width = max((len(o.key) for o in self.outcomes), default=0)
        for o in self.outcomes:
            verb = "run " if o.result == "would run" else "skip"
            lines.append(f"  {verb}  {o.key:<{width}}  {o.status}")
        return "\n".join(lines)

    def format_summary(self) -> str:
        lines = [
            f"{self.stage}: {len(self.outcomes)} units: {len(self.done)} done, "
            f"{len(self.skipped)} skipped (up to date), {len(self.failed)} failed "
            + (f"{len(self.interrupted)} interrupted " if self.interrupted else "")
            + f"[{self.seconds:.1f} s]"
        ]
        lines += format_results(self.stage, self.results)
        width = max((len(o.key) for o in self.failed), default=0)
        for o in self.failed:
            lines.append(f"  FAILED  {o.key:<{width}}  {o.reason}")
        return "\n".join(lines)

    def format_results(self) -> list[str]:
        """The stage's result lines (frames and errors, samples per split, ...)."""
        return format_results(self.stage, self.results)

    def to_json(self) -> dict:
        return {
            "stage": self.stage,
            "done": len(self.done),
            "skipped": len(self.skipped),
            "failed": [{"unit": o.key, "reason": o.reason} for o in self.failed],
            "seconds": round(self.seconds, 3),
            "results": self.results,
        }


# --------------------------------------------------------------------------- worker side


def one_line(error: BaseException) -> str:
    """``"DataError: /x/y.mp4: cannot open video"``: class name and the message's first line."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else repr(error)}"


def execute_unit(
    run_unit,
    unit: Unit,
    config,
    work_root: str,
    stage: str,
    stage_version: str,
    config_hash: str,
    inputs: Mapping[str, Mapping],
    *prerequisites: dict,
    progress_topic: str | None = None,
) -> dict:
    """Worker side of one unit: run it, check its outputs, write its done-record.

    Never raises for a failing unit: returns {"ok": False, "reason": one line} instead, so
    dask does not retry deterministic failures. The old done-record is removed first, so a
    unit killed half-way is never taken as up to date. ``prerequisites`` are the results of
    the units of ``unit.after`` that ran in this run (the runner submits this one when they
    end): when one failed, this unit fails without running; the inputs they wrote are
    fingerprinted again here, after they were written. ``progress_topic``: the dask event topic that
    carries the unit's ``unit_progress`` reports to the client.
    """
    work = WorkDir(Path(work_root))
    t0 = time.perf_counter()
    failed = [r for r in prerequisites if not r.get("ok")]
    if failed:
        return {"key": unit.key, "ok": False, "seconds": 0.0,
                "reason": f"prerequisite {failed[0]['key']} failed: {failed[0].get('reason', '')}"}
    try:
        remove_done_record(work, stage, unit.key)
        if prerequisites:
            written = {str(Path(p).absolute()) for r in prerequisites for p in r.get("outputs", ())}
            fresh = FingerprintCache()
            inputs = {role: fresh(path) if str(Path(path).absolute()) in written else inputs[role]
                      for role, path in unit.inputs.items()}
        with reporting(_event_sink(progress_topic, unit.key)):
            info = run_unit(unit, config) or {}
        missing = [p for p in unit.outputs if not Path(p).exists()]
        if missing:
            raise RuntimeError(f"unit did not write {missing[0]}")
        write_done_record(
            work, stage, unit.key, stage_version=stage_version, params=unit.params,
            config_hash=config_hash, inputs=inputs, outputs=list(unit.outputs), info=info,
        )
        return {"key": unit.key, "ok": True, "info": info, "seconds": time.perf_counter() - t0,
                "outputs": [str(p) for p in unit.outputs]}
    except Exception as e:
        return {"key": unit.key, "ok": False, "reason": one_line(e),
                "seconds": time.perf_counter() - t0}


def _event_sink(topic: str | None, key: str):
    """sink(done, total, what) that logs a dask event on this worker; None outside a worker."""
    if topic is None:
        return None
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None

    def sink(done: int, total: int, what: str) -> None:
        worker.log_event(topic, {"unit": key, "done": done, "total": total, "what": what})

    return sink


# --------------------------------------------------------------------------- client side


def unit_config_hash(stage: Stage, unit: Unit) -> str:
    return sha256_json({"stage": stage.name, "version": stage.version, "params": unit.params})


def _available_resources(client) -> list[dict]:
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return [dict(w.get("resources") or {}) for w in workers.values()]


def _satisfiable(need: Mapping[str, float] | None, offers: list[dict]) -> bool:
    return not need or any(all(o.get(k, 0) >= v for k, v in need.items()) for o in offers)


def unit_statuses(stage: Stage, units: list[Unit], work: WorkDir, *, force: bool = False
                  ) -> list[tuple[Unit, str, str, dict]]:
    """(unit, status, config hash, input fingerprints) of each planned unit, in plan order.

    status: "missing", "stale (why)", "forced" or "up to date" (``pipeline.store.unit_status``);
    a unit that runs after one that reruns is stale too. Reads WORK, writes nothing.
    """
    keys = [u.key for u in units]
    if len(set(keys)) != len(keys):
        raise RuntimeError(f"stage {stage.name}: plan has duplicate unit keys")
    fingerprints = FingerprintCache()
    reruns: dict[str, bool] = {}
    out = []
    for unit in units:
        unknown = [k for k in unit.after if k not in reruns]
        if unknown:
            raise RuntimeError(f"stage {stage.name}: unit {unit.key} runs after {unknown[0]}, "
                               "which the plan does not list before it")
        chash = unit_config_hash(stage, unit)
        inputs = {role: fingerprints(path) for role, path in unit.inputs.items()}
        status = unit_status(work, stage.name, unit.key, config_hash=chash, params=unit.params,
                             inputs=inputs, outputs=list(unit.outputs), force=force)
        rerun = [k for k in unit.after if reruns[k]]
        if status == "up to date" and rerun:
            status = f"stale (runs after {rerun[0]}, which reruns)"
        reruns[unit.key] = status != "up to date"
        out.append((unit, status, chash, inputs))
    return out


def run_stage(
    stage: Stage,
    config,
    work: WorkDir,
    client=None,
    *,
    force: bool = False,
    dry_run: bool = False,
    keep_going: bool = False,
    progress: bool = True,
    retries: int = 1,
) -> StageReport:
    """Plan ``stage``, skip up-to-date units, run the others on ``client``, report.

    ``client`` is a dask Client or a zero-argument factory of one, called only when some
    unit has to run (an up-to-date stage starts no cluster); None is fine with ``dry_run``. ``keep_going`` only changes the caller's exit
    code (failing units never stop the others); it is accepted here for symmetry and recorded
    in run.json. The caller holds the work dir's lock.
    """
    t0, started_at = time.perf_counter(), time.time()
    units = stage.plan(config, work)
    keys = [u.key for u in units]
    todo: list[tuple[Unit, str, str, dict]] = []
    outcomes: dict[str, UnitOutcome] = {}
    for unit, status, chash, inputs in unit_statuses(stage, units, work, force=force):
        if status == "up to date":
            outcomes[unit.key] = UnitOutcome(unit.key, status, "would skip" if dry_run else "skipped")
        else:
            outcomes[unit.key] = UnitOutcome(unit.key, status, "would run" if dry_run else "")
            todo.append((unit, status, chash, inputs))
    report = StageReport(stage.name, [outcomes[k] for k in keys], dry_run=dry_run)
    if dry_run:
        report.seconds = time.perf_counter() - t0
        return report
    if todo:
        if client is None:
            raise ValueError("run_stage needs a dask client unless dry_run")
        if not hasattr(client, "submit"):  # a factory: start the cluster only when needed
            client = client()
        if stage.prepare is not None:
            stage.prepare(config, work, [u for u, *_ in todo])

    for o in report.skipped:  # their results, for the summary
        o.info = (read_done_record(work, stage.name, o.key) or {}).get("info", {})
    try:
        _run_units(stage, config, work, client, todo, outcomes, progress=progress, retries=retries,
                   skipped=len(units) - len(todo))
    except KeyboardInterrupt:
        for o in report.outcomes:
            o.result = o.result or "interrupted"
        report.seconds = time.perf_counter() - t0
        raise StageInterrupted(report, work, started_at) from None
    if stage.finalize is not None:  # also after failures: it must describe what is there
        stage.finalize(config, work, units)
    report.results = stage_results(report, units, work)
    report.seconds = time.perf_counter() - t0
    atomic_write_json(work.failures_json(stage.name),
                      [{"unit": o.key, "reason": o.reason} for o in report.failed])
    record_run(work, stage, config, report, keep_going=keep_going)
    return report


class StageInterrupted(KeyboardInterrupt):
    """Ctrl-C during a stage's units; ``report`` holds what finished (results "done"/"failed")
    and what did not (result "interrupted")."""

    def __init__(self, report: StageReport, work: WorkDir, started_at: float) -> None:
        super().__init__(report.stage)
        self.report, self.work, self.started_at = report, work, started_at

    def settle(self) -> StageReport:
        """Call after the cluster is closed: units that finished after the client stopped
        listening (their worker was still busy) wrote a done-record since ``started_at``; they
        count as done (a rerun skips them)."""
        for o in self.report.interrupted:
            path = self.work.done_record(self.report.stage, o.key)
            with contextlib.suppress(OSError):
                if path.stat().st_mtime >= self.started_at and read_done_record(self.work, self.report.stage, o.key):
                    o.result = "done"
        return self.report


POLL_S = 0.1
"""Seconds between looks at the running units (and redraws when due)."""


def _run_units(stage, config, work, client, todo, outcomes, *, progress, retries, skipped) -> None:
    if not todo:
        return
    offers = _available_resources(client) if any(u.resources for u, *_ in todo) else []
    futures = {}
    by_key = {}
    awaited = {k for u, *_ in todo for k in u.after}
    topic = f"h36m-nvf-progress-{stage.name}-{os.urandom(6).hex()}"  # this run only
    board = ProgressBoard(stage.name, skipped + len(todo), skipped, progress_mode(progress))
    results: dict[str, dict] = {}  # of the units of this run that finished
    held: list[tuple[Unit, str, dict]] = []
    in_run: set[str] = set()  # submitted or held

    def submit(unit: Unit, chash: str, inputs: dict, prerequisites) -> None:
        fut = client.submit(
            execute_unit, stage.run_unit, unit, config, str(work.root), stage.name,
            stage.version, chash, inputs, *prerequisites, progress_topic=topic,
            key=f"{stage.name}-{unit.key}-{os.urandom(4).hex()}", pure=False,
            retries=retries, resources=dict(unit.resources) if unit.resources else None,
            # first the units others wait for: a subject's shape before any other's poses
            priority=AWAITED_PRIORITY if unit.key in awaited else 0,
        )
        futures[fut] = unit.key
        by_key[unit.key] = fut

    def release_held() -> None:
        """Submit the held units whose prerequisites have all finished, with their results as
        plain values: a dask dependency would place them on the worker that holds the result
        (the shape unit's), from which the scheduler steals them for idle workers only later
        (measured: the second pose unit started 1-2 s after the first)."""
        for item in list(held):
            unit = item[0]
            if all(k in results for k in unit.after if k in in_run):
                held.remove(item)
                submit(*item, [results[k] for k in unit.after if k in results])

    for unit, _status, chash, inputs in todo:
        if not _satisfiable(unit.resources, offers):
            outcomes[unit.key].result = "failed"
            outcomes[unit.key].reason = f"no dask worker offers resources {dict(unit.resources)}"
            board.unit_finished(unit.key, ok=False)
            continue
        blocked = [k for k in unit.after if outcomes[k].result == "failed"]
        if blocked:
            outcomes[unit.key].result = "failed"
            outcomes[unit.key].reason = f"prerequisite {blocked[0]} failed: {outcomes[blocked[0]].reason}"
            board.unit_finished(unit.key, ok=False)
            continue
        in_run.add(unit.key)
        if any(k in in_run for k in unit.after):  # after units of this run: submitted when they end
            held.append((unit, chash, inputs))
            continue
        submit(unit, chash, inputs, ())
    if stage.warm_up is not None and futures:  # after the units: the first ones start at once
        _warm_up_workers(client, stage.warm_up, config, next(u for u, *_ in todo if u.key in by_key))

    def on_event(event) -> None:  # on the client's event-loop thread
        msg = event[1] if isinstance(event, tuple) else event
        with contextlib.suppress(Exception):
            board.item_report(msg["unit"], msg["done"], msg["total"], msg["what"])

    client.subscribe_topic(topic, on_event)
    pending = dict(futures)
    try:
        while pending:
            finished = [f for f in pending if f.done()]
            for fut in finished:
                key = pending.pop(fut)
                try:
                    result = fut.result()
                except Exception as e:  # lost workers (KilledWorker), unpicklable inputs, ...
                    result = {"key": key, "ok": False, "reason": one_line(e)}
                o = outcomes[key]
                o.seconds = result.get("seconds", 0.0)
                if result["ok"]:
                    o.result, o.info = "done", result.get("info", {})
                else:
                    o.result, o.reason = "failed", result["reason"]
                    log.info("%s %s failed: %s", stage.name, key, o.reason)
                board.unit_finished(key, ok=result["ok"])
                results[key] = result
            if finished and held:
                release_held()
                pending.update({f: k for f, k in futures.items() if k not in results and f not in pending})
            board.tick()
            if pending and not finished:
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        with sigint_ignored():  # let the cancel through before a second Ctrl-C
            with contextlib.suppress(Exception):
                client.cancel(list(pending))
        for key in [*pending.values(), *(u.key for u, *_ in held)]:
            outcomes[key].result = "interrupted"
        board.close()
        raise
    except BaseException:
        with contextlib.suppress(Exception):
            client.cancel(list(pending))
        board.close()
        raise
    else:
        board.close()
    finally:
        with contextlib.suppress(Exception):
            client.unsubscribe_topic(topic)


AWAITED_PRIORITY = 2
"""Priority of the units others run after (the rest have 0)."""
WARM_UP_PRIORITY = 1
"""Below the awaited units (a worker that got one runs it first and warms up on the way), above
the others: an idle worker warms up while a lone awaited unit runs, before its first unit."""


def _warm_up_workers(client, warm_up, config, unit: Unit) -> None:
    """Queue ``warm_up(config, unit)`` once on every worker that offers ``unit.resources``
    (``WARM_UP_PRIORITY``).

    Fire and forget: a failing warm-up is only logged (the units meet the same problem and
    report it as their failure). Why not before the first unit everywhere: on a loaded
    machine the first unit's worker then waits for the others' warm-ups too (measured with
    another process busy: the shape unit started 4.8 s after the cluster instead of 2.3 s)."""
    from distributed import fire_and_forget

    workers = client.scheduler_info(n_workers=-1)["workers"]
    need = dict(unit.resources or {})
    for address, info in sorted(workers.items()):
        if all((info.get("resources") or {}).get(k, 0) >= v for k, v in need.items()):
            fire_and_forget(client.submit(
                _warm_up, warm_up, config, unit, key=f"warm-up-{os.urandom(4).hex()}", pure=False,
                workers=[address], allow_other_workers=False, priority=WARM_UP_PRIORITY,
                resources=need or None))


def _warm_up(warm_up, config, unit: Unit) -> None:
    try:
        warm_up(config, unit)
    except Exception as e:  # noqa: BLE001 (the units report it)
        log.debug("warm-up before %s: %s", unit.key, one_line(e))


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("h36m-nvf", "numpy", "opencv-python-headless", "dask", "distributed", "torch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def record_run(work: WorkDir, stage: Stage, config, report: StageReport, *, keep_going: bool) -> None:
    """Update ``WORK/run.json``: this stage's config, versions and summary (others kept)."""
    try:
        run = read_json(work.run_json)
    except FileNotFoundError:
        run = {}
    run.setdefault("stages", {})[stage.name] = {
        "stage_version": stage.version,
        "config": config_to_json(config),
        "versions": package_versions(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "keep_going": keep_going,
        "summary": report.to_json(),
    }
    atomic_write_json(work.run_json, run)
