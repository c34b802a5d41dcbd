"""The Ray executor: the driver plans batches as in one process; replicas (Ray actors) answer them.

Each replica builds the model once through the same backend (the base and every adapter, answerable in any order)
and answers whole batches. The driver keeps everything else: tasks, requests, dedupe, store look-up, order and
batch boundaries (harness.runner), so the batches, and the answers, are those of a one-process run. Batches go to
whichever replica has room; each answer is recorded in the driver's store as its batch returns. A replica that
dies is restarted by Ray and its unfinished batches go back to the queue, for it or another replica; a batch is
recorded once, when its answer arrives.
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from harness.backends.base import VariantInfo
from harness.errors import HarnessError
from harness.models.loading import ModelSpec, model_key
from harness.requests import Answer
from harness.runner import Batch, Plan, planned_sizes, record_many
from harness.store import Store

IN_FLIGHT = 2  # batches per replica: one answering, one waiting, so a replica does not idle for the driver
RESTARTS = 3  # times Ray restarts a dead replica
ATTEMPTS = 3  # times one batch may be lost with its replica before the run stops
ENV_PREFIXES = ("HF_", "TRANSFORMERS_", "TOKENIZERS_", "CUDA_")  # driver settings replicas follow


@dataclass
class RayOptions:
    """--ray and its companions. `gpus_per_replica` None: 1 with --device cuda, else 0."""

    address: str
    replicas: int | None = None
    cpus_per_replica: float = 1.0
    gpus_per_replica: float | None = None

    def validate(self) -> RayOptions:
        if self.address != "auto":
            host, _, port = self.address.rpartition(":")
            if not host or not port.isdigit() or "//" in self.address:
                raise HarnessError(f"--ray {self.address}: expected auto or HOST:PORT of a Ray head (e.g. 10.0.0.1:6379)")
        if self.replicas is not None and self.replicas < 1:
            raise HarnessError(f"--replicas: must be > 0, got {self.replicas}")
        if self.cpus_per_replica <= 0:
            raise HarnessError(f"--ray-cpus-per-replica: must be > 0, got {self.cpus_per_replica}")
        if self.gpus_per_replica is not None and self.gpus_per_replica < 0:
            raise HarnessError(f"--ray-gpus-per-replica: must be >= 0, got {self.gpus_per_replica}")
        return self


@dataclass
class ReplicaInfo:
    """What every replica reports once its model is built; the driver plans with it instead of loading a model."""

    kind: str
    variants: list[VariantInfo]
    engine: dict[str, Any]
    mixes_variants: bool
    batch_sizes: int | dict[str, int]  # what the runner hands over per call, as a one-process run plans it


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise HarnessError("--ray: needs ray, which is not installed (pip install 'harness[ray]')") from None
    return ray


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    msg = text[0] if text else ""
    return msg if isinstance(e, HarnessError) else f"{type(e).__name__}: {msg}"


class Replica:
    """One copy of the model on a Ray worker (wrapped by ray.remote in RayExecutor). A model that cannot be built
    is reported by ready(), not raised, so the driver can stop the run with one line naming the node."""

    def __init__(self, spec: ModelSpec, threads: int | None) -> None:
        import ray

        self.node = ray.util.get_node_ip_address()
        self.session: Any = None
        self.error: str | None = None
        self.stats = {"batches": 0, "busy_s": 0.0, "cpu_s": 0.0}  # since this process started
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        try:
            self.session = _open_any_order(spec)
        except (HarnessError, ImportError, OSError, MemoryError, RuntimeError) as e:  # torch's out-of-memory included
            self.error = _first_line(e)

    def ready(self) -> dict[str, Any]:
        import ray

        out: dict[str, Any] = {"node": self.node, "pid": os.getpid(), "error": self.error,
                               "gpus": [str(g) for g in ray.get_gpu_ids()]}
        s = self.session
        if s is not None:
            out["info"] = ReplicaInfo(s.kind, list(s.variants), s.describe(), bool(s.mixes_variants), _sizes(s))
        return out

    def answer(self, batch: Batch) -> list[Answer]:
        t0, c0 = time.perf_counter(), time.process_time()
        if batch.mixed:
            out = list(self.session.answer(batch.kind, batch.items))
        else:
            method = getattr(self.session.model_for(batch.label), batch.kind, None)
            if method is None:
                raise HarnessError(f"model {self.session.variants[0].identity.get('base', '?')} cannot answer "
                                   f"{batch.kind} requests")
            out = list(method(batch.requests))
        self.stats["batches"] += 1
        self.stats["busy_s"] += time.perf_counter() - t0
        self.stats["cpu_s"] += time.process_time() - c0
        return out

    def report(self) -> dict[str, Any]:
        """Batches answered and seconds spent answering them (wall and CPU), for results.json and the bench."""
        return {"node": self.node, "pid": os.getpid(), **{k: round(v, 3) for k, v in self.stats.items()}}


def _sizes(session: Any) -> int | dict[str, int]:
    """The batch sizes a one-process run would plan with (the session's when it mixes variants, else its models'),
    so the driver's batches, and with them every answer, are the same as that run's."""
    if session.mixes_variants:
        return planned_sizes(session)
    return planned_sizes(session.model_for(session.variants[0].label))


def _open_any_order(spec: ModelSpec) -> Any:
    """The backend's session, able to answer any variant's batch at any time."""
    from harness.backends import get_backend

    cls = get_backend(spec.backend)
    if "any_order" in inspect.signature(cls.open).parameters:
        return cls().open(spec, any_order=True)  # type: ignore[call-arg]  # backends that offer random access
    session = cls().open(spec)
    if not session.mixes_variants and len(session.variants) > 1:
        session.close()
        raise HarnessError(f"--ray: backend {spec.backend} answers its variants only in order; evaluate one adapter per "
                           "run, or run without --ray")
    return session


@dataclass
class _Rep:
    index: int
    handle: Any
    node: str = "?"
    pid: int = 0
    state: str = "starting"  # starting | alive | restarting | dead
    busy: int = 0
    probe_at: float | None = None  # while restarting: when to ask it next whether it is back


@dataclass
class _Work:
    plan: Plan
    batch: Batch
    attempts: int = 0


class _Bar:
    """The run's one progress bar: requests answered, replicas alive, batches in flight. Log lines print above it."""

    def __init__(self, progress: Any, tid: Any) -> None:
        self.progress, self.tid = progress, tid

    def log(self, msg: str) -> None:
        if self.progress is None:
            print(msg, file=sys.stderr)
        else:
            self.progress.console.print(msg, markup=False, highlight=False)

    def update(self, advance: int, status: str) -> None:
        if self.progress is not None:
            self.progress.update(self.tid, advance=advance, status=status)


@contextmanager
def _bar(description: str, total: int, quiet: bool) -> Iterator[_Bar]:
    if quiet or total == 0:
        yield _Bar(None, None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(file=sys.stderr)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=not console.is_terminal) as p:
        yield _Bar(p, p.add_task(description, total=total, status=""))


class RayExecutor:
    """Connect to (or start) a cluster, build the replicas, answer planned batches on them; a context manager that
    kills its replicas and disconnects on the way out."""

    def __init__(self, spec: ModelSpec, opts: RayOptions, quiet: bool = False) -> None:
        self.spec, self.opts, self.quiet = spec, opts, quiet
        self.reps: list[_Rep] = []
        self.restarts = 0
        self.timings: dict[str, float] = {}
        self.work: list[dict[str, Any]] = []  # per replica: batches and seconds answering (replica_report)
        self.ray = _import_ray()
        self._log = _Bar(None, None).log

    def __enter__(self) -> RayExecutor:
        try:
            self._connect()
            self._start_replicas()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- cluster and replicas ------------------------------------------------------------------------------------
    def _connect(self) -> None:
        t0 = time.time()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        kw: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
        address = self.opts.address
        if address == "auto":
            try:
                self.ray.init(address="auto", **kw)
            except ConnectionError:  # no cluster running: start one on this machine
                self.ray.init(include_dashboard=False, **kw)
        else:
            host, _, port = address.rpartition(":")
            try:
                socket.create_connection((host, int(port)), timeout=10).close()
            except OSError as e:
                raise HarnessError(f"--ray {address}: no Ray head answers there ({e.strerror or e}); start one with "
                                   f"`ray start --head --port {port}` or pass --ray auto") from None
            try:
                self.ray.init(address=address, **kw)
            except (ConnectionError, self.ray.exceptions.AuthenticationError) as e:
                raise HarnessError(f"--ray {address}: a Ray head listens there but this process cannot join it "
                                   f"({_first_line(e)[:160]}); if the cluster uses token authentication, set "
                                   "RAY_AUTH_MODE=token here with its token (RAY_AUTH_TOKEN or ~/.ray/auth_token)") from None
        self.timings["connect_s"] = round(time.time() - t0, 3)

    def _resources(self) -> tuple[int, float, float, ModelSpec]:
        """(replicas, CPUs and GPUs per replica, the spec replicas build) from the flags and the cluster's size."""
        total = self.ray.cluster_resources()
        cpus, gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
        cuda = self.spec.device.startswith("cuda")
        per_gpu = self.opts.gpus_per_replica if self.opts.gpus_per_replica is not None else (1.0 if cuda else 0.0)
        per_cpu = self.opts.cpus_per_replica
        if per_gpu > 0 and not cuda:
            raise HarnessError(f"--ray-gpus-per-replica {per_gpu:g}: --device is {self.spec.device}; pass --device cuda")
        if cuda and gpus == 0:
            raise HarnessError(f"--device {self.spec.device}: the Ray cluster at {self.opts.address} has no GPUs")
        if not cuda and gpus > 0:
            self._log(f"ray: the cluster has {gpus:g} GPU(s) but --device is {self.spec.device}; pass --device cuda "
                      "to use them")
        room = int(gpus // per_gpu) if per_gpu > 0 else int(cpus // per_cpu)
        n = self.opts.replicas or room
        if n < 1 or n > room:
            what = f"{gpus:g} GPU(s)" if per_gpu > 0 else f"{cpus:g} CPU(s)"
            each = f"{per_gpu:g} GPU" if per_gpu > 0 else f"{per_cpu:g} CPU"
            raise HarnessError(f"--replicas {n}: the Ray cluster has {what}, room for {room} replica(s) of {each} each "
                               "(add nodes, or lower --replicas or the resources per replica)")
        return n, per_cpu, per_gpu, self._replica_spec(per_gpu)

    def _replica_spec(self, per_gpu: float) -> ModelSpec:
        spec = self.spec
        if per_gpu > 0:
            spec = replace(spec, device="cuda")  # Ray makes the replica's GPUs the only visible ones
            from harness.backends import get_backend

            if per_gpu > 1 and "tensor_parallel_size" in get_backend(spec.backend).options:
                given = spec.backend_options.get("tensor_parallel_size")
                if given not in (None, int(per_gpu)):
                    raise HarnessError(f"--backend-option tensor_parallel_size={given}: each replica has {per_gpu:g} GPUs")
                spec = replace(spec, backend_options={**spec.backend_options, "tensor_parallel_size": int(per_gpu)})
        return spec

    def _start_replicas(self) -> None:
        t0 = time.time()
        n, per_cpu, per_gpu, built = self._resources()
        self.per_replica = {"CPU": per_cpu, "GPU": per_gpu}
        env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
        threads = None if per_gpu > 0 else max(1, int(per_cpu))
        if threads is not None:
            env["OMP_NUM_THREADS"] = str(threads)
        actor = self.ray.remote(Replica).options(num_cpus=per_cpu, num_gpus=per_gpu, max_restarts=RESTARTS,
                                                 max_task_retries=0, runtime_env={"env_vars": env})
        self.reps = [_Rep(i, actor.remote(built, threads)) for i in range(n)]
        self._log(f"ray: building {n} replica(s) of {per_cpu:g} CPU / {per_gpu:g} GPU each")
        waiting = {r.handle.ready.remote(): r for r in self.reps}
        infos: list[tuple[_Rep, ReplicaInfo]] = []
        while waiting:
            done, _ = self.ray.wait(list(waiting), num_returns=1, timeout=60)
            if not done:
                self._log(f"ray: still waiting for {len(waiting)} replica(s) to be scheduled and build the model")
            for ref in done:
                rep = waiting.pop(ref)
                infos.append((rep, self._first_ready(rep, ref)))
        first, self.info = infos[0]
        for rep, info in infos[1:]:
            self._check_same(rep, info, first)
        self.timings["replicas_s"] = round(time.time() - t0, 3)

    def _first_ready(self, rep: _Rep, ref: Any) -> ReplicaInfo:
        try:
            got = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as e:
            raise HarnessError(f"--ray: replica {rep.index} died while building the model ({_first_line(e)[:200]})") \
                from None
        rep.node, rep.pid = got["node"], got["pid"]
        if got["error"]:
            raise HarnessError(f"--ray: the replica on node {rep.node} cannot build the model: {got['error']}")
        rep.state = "alive"
        self._log(f"ray: replica {rep.index} ready on node {rep.node} (pid {rep.pid}"
                  + (f", GPU {','.join(got['gpus'])})" if got["gpus"] else ")"))
        info: ReplicaInfo = got["info"]
        return info

    def _check_same(self, rep: _Rep, info: ReplicaInfo, first: _Rep) -> None:
        """Every replica must answer for the same files and engine versions, or answers would silently mix."""
        ours = [(v.label, model_key(v.identity)) for v in info.variants]
        if ours != [(v.label, model_key(v.identity)) for v in self.info.variants] or info.engine != self.info.engine:
            raise HarnessError(f"--ray: the replica on node {rep.node} sees other model/adapter files or engine versions "
                               f"than the one on node {first.node}; every node needs the same files and harness install")

    def close(self) -> None:
        if not self.ray.is_initialized():
            return
        for rep in self.reps:
            try:
                self.ray.kill(rep.handle, no_restart=True)
            except (ValueError, self.ray.exceptions.RayError):
                pass  # already gone
        self.ray.shutdown()

    def describe(self) -> dict[str, Any]:
        """What results.json records about the cluster: nodes, replicas and what each one holds."""
        nodes = [{"node": n["NodeManagerAddress"], "CPU": n["Resources"].get("CPU", 0), "GPU": n["Resources"].get("GPU", 0)}
                 for n in self.ray.nodes() if n.get("Alive")]
        return {"ray": self.ray.__version__, "address": self.opts.address, "nodes": nodes, "replicas": len(self.reps),
                "per_replica": self.per_replica, "replica_nodes": [r.node for r in self.reps],
                "replica_restarts": self.restarts, "startup_s": dict(self.timings), "replica_work": self.work}

    def _collect_work(self) -> None:
        """What each live replica answered (a restarted one counts from its restart)."""
        refs = {r.index: r.handle.report.remote() for r in self.reps if r.state == "alive"}
        self.work = []
        for i, ref in refs.items():
            try:
                self.work.append({"replica": i, **self.ray.get(ref, timeout=30)})
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.GetTimeoutError):
                continue

    # --- answering -----------------------------------------------------------------------------------------------
    def answer(self, plans: Sequence[Plan], store: Store | None, description: str = "ray") -> None:
        """Answer every batch of every plan on the replicas; each batch's answers are recorded as it returns."""
        with _bar(description, sum(p.todo for p in plans), self.quiet) as bar:
            self._log = bar.log
            try:
                _Dispatch(self, plans, store, bar).run()
            finally:
                self._log = _Bar(None, None).log
        self._collect_work()


@dataclass
class _Dispatch:
    ex: RayExecutor
    plans: Sequence[Plan]
    store: Store | None
    bar: _Bar
    work: list[_Work] = field(default_factory=list)
    queue: deque[int] = field(default_factory=deque)
    flying: dict[Any, tuple[_Rep, int]] = field(default_factory=dict)  # ref -> (replica, work index; -1: a probe)
    left: dict[int, int] = field(default_factory=dict)  # id(plan) -> batches not yet recorded

    def __post_init__(self) -> None:
        self.work = [_Work(p, b) for p in self.plans for b in p.batches]
        self.queue = deque(range(len(self.work)))
        self.left = {id(p): len(p.batches) for p in self.plans}
        for p in self.plans:
            if not p.batches:
                p.done_at = time.time()

    def run(self) -> None:
        ray = self.ex.ray
        while self.queue or any(i >= 0 for _, i in self.flying.values()):
            self._fill()
            if not self.flying and any(r.state == "restarting" for r in self.ex.reps):
                time.sleep(0.2)  # the only replicas left are restarting: wait for their next probe
                continue
            if not self.flying:
                raise HarnessError(f"--ray: every replica is gone ({self.ex.restarts} restart(s)); "
                                   f"{len(self.queue)} batch(es) unanswered; rerun with --resume")
            done, rest = ray.wait(list(self.flying), num_returns=1, timeout=1.0)
            if done and rest:  # everything else that has returned too: stored in one transaction
                done += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            returned: list[tuple[Plan, Batch, list[Answer], str]] = []
            try:
                for ref in done:
                    self._settle(ref, returned)
                self._fill()  # freed replicas get their next batch before the driver writes
            finally:
                self._record(returned)
            self.bar.update(sum(len(b.items) for _, b, _, _ in returned), self._status())

    def _record(self, returned: list[tuple[Plan, Batch, list[Answer], str]]) -> None:
        record_many(returned, self.store)
        for plan, *_ in returned:
            self.left[id(plan)] -= 1
            if self.left[id(plan)] == 0:
                plan.done_at = time.time()

    def _status(self) -> str:
        alive = sum(r.state == "alive" for r in self.ex.reps)
        batches = sum(i >= 0 for _, i in self.flying.values())
        return f"{alive}/{len(self.ex.reps)} replicas alive · {batches} batches in flight"

    def _fill(self) -> None:
        now = time.time()
        for rep in self.ex.reps:
            if rep.state == "restarting" and rep.probe_at is not None and rep.probe_at <= now:
                rep.probe_at = None
                self.flying[rep.handle.ready.remote()] = (rep, -1)
        alive = [r for r in self.ex.reps if r.state == "alive"]
        for depth in range(1, IN_FLIGHT + 1):
            for rep in alive:
                # a waiting batch only while there is more work than replicas: at the end of the run a batch queued
                # behind a busy replica would leave another one idle
                if self.queue and rep.busy < depth and (depth == 1 or len(self.queue) > len(alive)):
                    i = self.queue.popleft()
                    self.flying[rep.handle.answer.remote(self.work[i].batch)] = (rep, i)
                    rep.busy += 1

    def _settle(self, ref: Any, returned: list[tuple[Plan, Batch, list[Answer], str]]) -> None:
        """One finished call: a batch's answers join `returned`, a lost batch goes back to the queue, a probe
        tells whether a restarting replica is back."""
        ray = self.ex.ray
        rep, i = self.flying.pop(ref)
        if i < 0:
            self._probed(rep, ref)
            return
        rep.busy -= 1
        try:
            out = ray.get(ref)
        except ray.exceptions.RayActorError as e:
            self._lost(rep, i, e)
            return
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, HarnessError):
                raise HarnessError(f"replica on node {rep.node}: {e.cause}") from None
            raise
        w = self.work[i]
        returned.append((w.plan, w.batch, out, f"the replica on node {rep.node}"))

    def _lost(self, rep: _Rep, i: int, e: Exception) -> None:
        """A batch whose replica died goes back to the front of the queue; the replica is probed until Ray has
        restarted it."""
        w = self.work[i]
        w.attempts += 1
        if w.attempts >= ATTEMPTS:
            raise HarnessError(f"--ray: a {w.batch.kind} batch of {w.batch.label} ({len(w.batch.items)} requests) was lost "
                               f"with its replica {w.attempts} times, last on node {rep.node}; answers so far are in the "
                               "store (rerun with --resume, perhaps with a smaller --batch-size)")
        self.queue.appendleft(i)
        if rep.state == "alive":
            rep.state = "restarting"
            self.ex.restarts += 1
            self.bar.log(f"ray: replica {rep.index} on node {rep.node} (pid {rep.pid}) died ({type(e).__name__}); "
                         "its unfinished batches go back to the queue while Ray restarts it")
            rep.probe_at = time.time()

    def _probed(self, rep: _Rep, ref: Any) -> None:
        ray = self.ex.ray
        try:
            got = ray.get(ref)
        except ray.exceptions.ActorUnavailableError:
            rep.probe_at = time.time() + 1.0  # still restarting: ask again in a second
            return
        except ray.exceptions.RayActorError as e:
            rep.state = "dead"
            self.bar.log(f"ray: replica {rep.index} is gone for good ({_first_line(e)[:120]})")
            return
        if got["error"] or got["info"].variants != self.ex.info.variants:
            rep.state = "dead"
            self.bar.log(f"ray: replica {rep.index} restarted on node {got['node']} but cannot serve this run: "
                         f"{got['error'] or 'other model files'}")
            return
        rep.node, rep.pid, rep.state = got["node"], got["pid"], "alive"
        self.bar.log(f"ray: replica {rep.index} back on node {rep.node} (pid {rep.pid})")
