"""Batching of concurrent generations: many items through one talker and code predictor loop, each item streamed
to its own consumer as if it ran alone.

    submit(jobs) ─► waiting (FIFO) ─► a free worker takes the oldest job and every waiting job with the same
                                      sampling options, up to max_batch ─► one FrameLoop over them
         per frame, per row:  codes ─► its ChunkAssembler ─► AudioChunk ─► job.chunks (a queue) ─► consumer
                              runaway guard / budget / EOS / cancelled ─► the row ends (None in its queue)

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
    stopped: str | None = None  # why the job ended early (runaway), once it has ended
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
        self.batches_run = 0  # statistics: batches and rows so far
        self.rows_run = 0
        self._threads = [threading.Thread(target=self._work, name=f"qwen3-tts-batch-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

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
            if live:  # counted under the lock: two workers count
                self.batches_run += 1
                self.rows_run += len(live)
            return live

    def _work(self) -> None:
        while (live := self._take()) is not None:
            if live:
                try:
                    self._run(live)
                except BaseException as e:  # noqa: BLE001 - handed to every consumer of the batch
                    for j in live:
                        j.chunks.put(e)

    def _run(self, jobs: list) -> None:
        started = time.perf_counter()
        n = len(jobs)
        stop = np.zeros(n, dtype=bool)
        options = dict(jobs[0].options, max_new_tokens=max(j.budget for j in jobs))
        frames = self.tts._frames([j.row for j in jobs], [j.seed for j in jobs], options,
                                  budgets=[j.budget for j in jobs], stop=stop)
        assemblers = [ChunkAssembler(self.tts.decoder, j.first_chunk_frames, j.chunk_frames, started, j.warm_codes)
                      for j in jobs]
        guards = [RunawayGuard() if j.guard else None for j in jobs]

        def end(i: int) -> None:  # stop[i]: the row has ended here, and the frame loop feeds it EOS from now on
            stop[i] = True
            if not jobs[i].cancelled.is_set():
                last = assemblers[i].flush()
                if last is not None:
                    jobs[i].chunks.put(last)
            assemblers[i].close()
            jobs[i].chunks.put(None)

        try:
            for codes, finished in frames:
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
                        end(i)
                if stop.all():
                    break
        finally:
            frames.close()
            for i in range(n):
                if not stop[i]:
                    end(i)
