"""Batching of concurrent generations: many items through one talker and code predictor loop, each item streamed
to its own consumer as if it ran alone.

    submit(jobs) ─► waiting (FIFO) ─► a free worker takes the oldest job and every waiting job with the same
                                      sampling options, up to max_batch ─► one FrameLoop over them
         per frame, per row:  codes ─► its ChunkAssembler ─► AudioChunk ─► job.chunks (a queue) ─► consumer
                              runaway guard / budget / EOS / cancelled ─► the row ends (None in its queue; the
                              error instead if the loop failed); job.stopped says why when the guard cut it or its
                              budget ran out before EOS

Rows join at batch boundaries: a worker that is free takes whatever is waiting, so an idle server starts a request
at once, and under load the waiting requests ride together (one weight read per step serves every row: on a
memory-bound CPU a batch of 4 costs little more than one row). `workers` batches run at once, so a request that
arrives while a long batch runs need not wait for it. Each row has its own random generator, budget and decoder
state: a job's chunks are those of the same job run alone with the same seed (to floating-point rounding of the
batched matrix products, which the tests check gives the same codes).
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .longform import RunawayGuard
from .stream import DEFAULT_CHUNK_FRAMES, DEFAULT_FIRST_CHUNK_FRAMES, ChunkAssembler


@dataclass(eq=False)
class Job:
    """One item to generate: a prompt row (prompt.PromptRows) with its seed, token budget, sampling options (as
    the API's keyword arguments) and, in ICL voice cloning, the reference codes that warm its decoder."""
    row: object
    seed: int | None
    budget: int
    options: dict
    warm_codes: np.ndarray | None = None
    first_chunk_frames: int = DEFAULT_FIRST_CHUNK_FRAMES
    chunk_frames: int = DEFAULT_CHUNK_FRAMES
    guard: bool = True  # stop on runaway generation (longform.RunawayGuard)
    chunks: queue.Queue = field(default_factory=queue.Queue)  # AudioChunk..., then None, or an exception
    stopped: str | None = None  # why the job was cut (runaway, or no EOS within its budget), once it has ended
    stopped_by: str | None = None  # "runaway" or "budget" when stopped
    cancelled: threading.Event = field(default_factory=threading.Event)

    def key(self) -> tuple:
        """Jobs batch together when their sampling options are equal (the code predictor takes them per batch)."""
        return tuple(sorted((k, v) for k, v in self.options.items() if k != "max_new_tokens"))

    def cancel(self) -> None:
        """Stop generating this job (its row ends at the next frame); its queue gets no more chunks."""
        self.cancelled.set()

    def results(self):
        """The job's chunks as they come (blocking); raises what the worker raised."""
        while True:
            item = self.chunks.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


class Batcher:
    """Worker threads that run waiting jobs in batches through `tts` (a Qwen3TTS)."""

    def __init__(self, tts, max_batch: int = 8, workers: int = 2):
        if max_batch < 1 or workers < 1:
            raise ValueError("max_batch and workers must be at least 1")
        self.tts, self.max_batch = tts, max_batch
        self._waiting: list[Job] = []
        self._cv = threading.Condition()
        self._closed = False
        self.batches_run = 0  # statistics: batches, rows and frames (one per row per step) so far
        self.rows_run = 0
        self.frames_run = 0
        self.rows_active = 0  # rows in frame loops now
        self._count = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"qwen3-tts-batch-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    @property
    def rows_waiting(self) -> int:
        """Jobs submitted and not yet in a frame loop."""
        return len(self._waiting)

    def submit(self, jobs: list) -> None:
        with self._cv:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._waiting.extend(jobs)
            self._cv.notify_all()

    def close(self, timeout: float | None = None) -> None:
        """Stop taking jobs (waiting ones end empty); workers finish their running batch and exit."""
        with self._cv:
            self._closed = True
            for job in self._waiting:
                job.chunks.put(None)
            self._waiting.clear()
            self._cv.notify_all()
        for t in self._threads:
            t.join(timeout)

    def _take(self) -> list | None:
        with self._cv:
            while not self._waiting and not self._closed:
                self._cv.wait()
            if self._closed:
                return None
            key = self._waiting[0].key()
            batch = [j for j in self._waiting if j.key() == key][:self.max_batch]
            self._waiting = [j for j in self._waiting if j not in batch]
            for j in batch:
                if j.cancelled.is_set():  # cancelled while waiting: ends empty, takes no row
                    j.chunks.put(None)
            live = [j for j in batch if not j.cancelled.is_set()]
            if live:
                with self._count:  # two workers count
                    self.batches_run += 1
                    self.rows_run += len(live)
                    self.rows_active += len(live)
            return live

    def _work(self) -> None:
        while (live := self._take()) is not None:
            if live:
                self._run(live)

    def _run(self, jobs: list) -> None:
        """One frame loop over the jobs. Each job's queue ends with None, or with the exception that stopped the
        loop; rows_active counts down as rows end."""
        started = time.perf_counter()
        n = len(jobs)
        stop = np.zeros(n, dtype=bool)
        assemblers: list = []
        frames = None
        limits: list = []  # each row's budget in tokens, as the frame loop applies it

        def end(i: int, error: BaseException | None = None) -> None:
            stop[i] = True  # the row has ended here, and the frame loop feeds it EOS from now on
            with self._count:
                self.rows_active -= 1
            try:
                if error is None and not jobs[i].cancelled.is_set():
                    made = assemblers[i].done + len(assemblers[i].pending)  # frames the row got
                    if jobs[i].stopped is None and limits and made >= limits[i] - 1:
                        # all its budget's frames (N tokens, N - 1 frames): the token that reaches the budget gets
                        # no frame, EOS or not (as in the official loop), so the row is cut, alone or batched alike
                        jobs[i].stopped = f"no EOS within the budget of {limits[i] - 1} frames"
                        jobs[i].stopped_by = "budget"
                    last = assemblers[i].flush()
                    if last is not None:
                        jobs[i].chunks.put(last)
            except BaseException as e:  # noqa: BLE001 - handed to the row's consumer
                error = e
            finally:
                if i < len(assemblers):
                    assemblers[i].close()
                jobs[i].chunks.put(error)

        try:
            options = dict(jobs[0].options, max_new_tokens=max(j.budget for j in jobs))
            frames = self.tts._frames([j.row for j in jobs], [j.seed for j in jobs], options,
                                      budgets=[j.budget for j in jobs], stop=stop)
            cap = self.tts._options(options).max_new_tokens
            limits = [min(j.budget, cap) for j in jobs]
            for j in jobs:
                assemblers.append(ChunkAssembler(self.tts.decoder, j.first_chunk_frames, j.chunk_frames, started,
                                                 j.warm_codes))
            guards = [RunawayGuard() if j.guard else None for j in jobs]
            for codes, finished in frames:
                live = int(n - (stop | finished).sum())
                with self._count:  # two workers count
                    self.frames_run += live
                for i, job in enumerate(jobs):
                    if stop[i]:
                        continue
                    if job.cancelled.is_set() or finished[i]:
                        end(i)
                        continue
                    chunk = assemblers[i].push(codes[i])
                    if chunk is None:
                        continue
                    job.chunks.put(chunk)
                    assemblers[i].resume()
                    if guards[i] is not None and guards[i].feed(chunk.codes):
                        job.stopped = f"runaway generation stopped: {guards[i].reason}"
                        job.stopped_by = "runaway"
                        end(i)
                if stop.all():
                    break
        except BaseException as e:  # noqa: BLE001 - handed to the consumers of the rows still running
            for i in range(n):
                if not stop[i]:
                    end(i, e)
        finally:
            if frames is not None:
                frames.close()
            for i in range(n):
                if not stop[i]:
                    end(i)
