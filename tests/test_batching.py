"""Batching: rows of one frame loop sample, stop and stream exactly as they would alone; a row that spends its
budget without EOS says so."""
from __future__ import annotations

import numpy as np
import pytest

from qwen3_tts_onnx import Qwen3TTS
from qwen3_tts_onnx.batching import Batcher, Job

SAMPLING = {"do_sample": True, "subtalker_dosample": True}
GREEDY = {"do_sample": False, "subtalker_dosample": False}
TEXTS = ["Hello world, this is the first row.", "A second, much longer row of text that goes on for a while longer.",
         "Third."]


def _rows(tts, texts, speaker="ryan"):
    return [tts._custom_voice_rows(t, speaker, "english", None, True)[0] for t in texts]


def test_batched_rows_sample_as_alone(models):
    """generate_codes on a batch with one seed per row == each row alone with its seed (sampling on)."""
    tts = models("cv_wide").ours
    rows = _rows(tts, TEXTS)
    batched = tts.generate_codes(rows, seed=[11, 22, 33], max_new_tokens=20, **SAMPLING)
    for row, seed, got in zip(rows, [11, 22, 33], batched):
        alone = tts.generate_codes([row], seed=seed, max_new_tokens=20, **SAMPLING)[0]
        np.testing.assert_array_equal(got, alone)
    assert not np.array_equal(batched[0][:5], batched[1][:5])  # the rows really differ


def test_per_row_budgets(models):
    """Each row stops at its own budget (N tokens -> N - 1 frames, as max_new_tokens alone)."""
    tts = models("cv_wide").ours
    rows = _rows(tts, TEXTS)
    frames = tts._frames(rows, 5, dict(max_new_tokens=12, **SAMPLING), budgets=[4, 12, 7])
    counts = np.zeros(3, dtype=int)
    for _, finished in frames:
        counts += ~finished
    alone = [tts.generate_codes([r], seed=5, max_new_tokens=b, **SAMPLING)[0].shape[0] for r, b in zip(rows, [4, 12, 7])]
    assert counts.tolist() == alone and alone[0] == 3


@pytest.fixture
def batcher(models):
    b = Batcher(models("cv_wide").ours, max_batch=8, workers=1)
    yield b
    b.close()


def test_batcher_streams_each_job_as_alone(models, batcher):
    """Jobs with different texts, seeds and budgets, run as one batch, stream the same chunks as stream_rows alone."""
    tts = models("cv_wide").ours
    rows = _rows(tts, TEXTS)
    jobs = [Job(r, seed, budget, dict(SAMPLING), guard=False) for r, seed, budget in zip(rows, (1, 2, 3), (9, 20, 14))]
    batcher.submit(jobs)
    for job, row in zip(jobs, rows):
        got = list(job.results())
        want = list(tts.stream_rows(row, job.seed, max_new_tokens=job.budget, **SAMPLING))
        assert [c.frame_start for c in got] == [c.frame_start for c in want]
        np.testing.assert_array_equal(np.concatenate([c.codes for c in got]), np.concatenate([c.codes for c in want]))
        np.testing.assert_allclose(np.concatenate([c.samples for c in got]),
                                   np.concatenate([c.samples for c in want]), atol=1e-5)
    assert batcher.batches_run == 1 and batcher.rows_run == 3


def test_batcher_cancel_and_option_groups(models, batcher):
    """A cancelled job ends without stopping the others; jobs with other sampling options run in another batch."""
    tts = models("cv_wide").ours
    rows = _rows(tts, TEXTS)
    a = Job(rows[0], 1, 300, dict(SAMPLING), guard=False)
    b = Job(rows[1], 2, 30, dict(SAMPLING), guard=False)
    c = Job(rows[2], 3, 10, {"do_sample": False, "subtalker_dosample": False}, guard=False)
    batcher.submit([a, b, c])
    first = next(a.results())
    a.cancel()
    got = first.codes.shape[0] + sum(ch.codes.shape[0] for ch in a.results())
    alone = tts.generate_codes([rows[0]], seed=1, max_new_tokens=300, **SAMPLING)[0].shape[0]
    assert alone > 100 and got < alone  # cut short, not run to its end
    want = tts.generate_codes([rows[1]], seed=2, max_new_tokens=30, **SAMPLING)[0]
    np.testing.assert_array_equal(np.concatenate([ch.codes for ch in b.results()]), want)
    want = tts.generate_codes([rows[2]], max_new_tokens=10, do_sample=False, subtalker_dosample=False)[0]
    np.testing.assert_array_equal(np.concatenate([ch.codes for ch in c.results()]), want)
    assert batcher.batches_run == 2


def test_batcher_hands_a_failure_to_its_rows(models, batcher, monkeypatch):
    """An error inside a frame loop (here after 3 frames, one of them not yet in a chunk) reaches each running row's
    consumer instead of a quiet early end; the rows are counted out and the worker goes on with the next batch."""
    tts = models("cv_wide").ours
    rows = _rows(tts, TEXTS[:2])
    real = tts._frames

    def failing(*args, **kwargs):
        for i, frame in enumerate(real(*args, **kwargs)):
            if i == 3:
                raise RuntimeError("talker failed")
            yield frame

    monkeypatch.setattr(tts, "_frames", failing)
    jobs = [Job(r, 1, 20, dict(SAMPLING), guard=False) for r in rows]
    batcher.submit(jobs)
    for job in jobs:
        with pytest.raises(RuntimeError, match="talker failed"):
            list(job.results())
    assert batcher.rows_active == 0
    monkeypatch.undo()
    again = Job(rows[0], 1, 5, dict(SAMPLING), guard=False)
    batcher.submit([again])
    assert sum(c.codes.shape[0] for c in again.results()) == 4 and batcher.rows_active == 0


class EosTalker:
    """The talker session with its EOS logit set: never drawn (eos_at None), or certain from token `eos_at` of each
    run on (counted from the prefill; one run at a time). Run through `session.run` (generate.PlainSession)."""

    def __init__(self, session, eos: int, eos_at: int | None):
        self.session, self.eos, self.eos_at, self.step = session, eos, eos_at, 0

    def get_outputs(self):
        return self.session.get_outputs()

    def run(self, names, feeds):
        out = self.session.run(names, feeds)
        self.step = 0 if feeds["inputs_embeds"].shape[1] > 1 else self.step + 1
        ends = self.eos_at is not None and self.step >= self.eos_at
        out[names.index("logits")][..., self.eos] = 1e4 if ends else -np.inf
        return out


def _eos_at(models, eos_at: int | None) -> Qwen3TTS:
    tts = models("cv_wide").ours
    talker = EosTalker(tts.sessions["talker"], tts.cfg["codec_eos_token_id"], eos_at)
    return Qwen3TTS.from_sessions(models("cv_wide").art, {**tts.sessions, "talker": talker})


def _run(batcher, jobs) -> list:
    batcher.submit(jobs)
    return [sum(c.codes.shape[0] for c in job.results()) for job in jobs]


def test_budget_without_eos_is_reported(models):
    """A row that gets all its budget's frames without EOS ends with job.stopped saying so, whether the frame loop
    shows it ending (a shorter row of a batch) or just ends (a row alone, the longest row); a row that ends by EOS,
    before its budget, reports nothing."""
    tts = _eos_at(models, 6)  # EOS is token 6: 6 frames
    b = Batcher(tts, max_batch=8, workers=1)
    try:
        rows = _rows(tts, TEXTS)
        jobs = [Job(r, 1, budget, dict(GREEDY)) for r, budget in zip(rows, (4, 30, 8))]
        assert _run(b, jobs) == [3, 6, 6] and b.batches_run == 1
        assert [j.stopped for j in jobs] == ["no EOS within the budget of 3 frames", None, None]
        assert [j.stopped_by for j in jobs] == ["budget", None, None]
    finally:
        b.close()
    tts = _eos_at(models, None)  # never EOS
    b = Batcher(tts, max_batch=8, workers=1)
    try:
        alone = [Job(rows[0], 1, 9, dict(GREEDY))]
        batch = [Job(rows[0], 1, 5, dict(GREEDY)), Job(rows[1], 1, 9, dict(GREEDY))]
        assert _run(b, alone) == [8] and _run(b, batch) == [4, 8] and b.batches_run == 2
        assert [j.stopped for j in alone + batch] == [f"no EOS within the budget of {n} frames" for n in (8, 4, 8)]
        assert {j.stopped_by for j in alone + batch} == {"budget"} and b.rows_active == 0
    finally:
        b.close()
