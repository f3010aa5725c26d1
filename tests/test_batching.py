"""Dynamic batching with the PyTorch engine on the CPU: across jobs, per-segment results intact."""
from __future__ import annotations

import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from shared.config import Settings  # noqa: E402
from tests.support import Worker, wait_for  # noqa: E402
from worker.batcher import Batcher  # noqa: E402
from shared.options import SynthesisOptions  # noqa: E402
from shared import plan  # noqa: E402
from worker import synthesizer  # noqa: E402
from worker.pipeline import Pipeline  # noqa: E402
from worker.engines.base import SynthesisConfig, UnknownVoice  # noqa: E402

SENTENCES = ["今天天气很好。", "请在十分钟后回电话。", "北京是中国的首都。", "欢迎使用语音合成。",
             "他一边走一边想。", "春天来了。"]


@pytest.fixture(scope="module")
def torch_engine():
    from worker.engines import load_engine

    return load_engine(Settings.load(engine={"name": "fastspeech2-torch"}))


def test_concurrent_segments_share_batches_and_keep_their_own_results(torch_engine):
    alone = [torch_engine.synthesize(text, SynthesisConfig()) for text in SENTENCES]
    batcher = Batcher(torch_engine, max_batch=8, max_wait_s=0.2)
    results: dict[int, object] = {}
    barrier = threading.Barrier(len(SENTENCES))

    def job(index: int) -> None:
        barrier.wait()  # as if six jobs arrived together
        results[index] = batcher.submit(SENTENCES[index], SynthesisConfig()).result(timeout=120)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(len(SENTENCES))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(batcher.batch_sizes) > 1, batcher.batch_sizes
    assert sum(batcher.batch_sizes) == len(SENTENCES)
    for index, chunk in results.items():
        single = alone[index]
        assert [m.char for m in chunk.marks] == [m.char for m in single.marks]
        assert [m.end_ms for m in chunk.marks] == [m.end_ms for m in single.marks]
        assert len(chunk.samples) == len(single.samples)
        error = chunk.samples - single.samples
        snr = 10 * np.log10(np.sum(single.samples ** 2) / max(np.sum(error ** 2), 1e-20))
        assert snr > 40, (index, snr)


def test_a_bad_segment_fails_alone(torch_engine):
    batcher = Batcher(torch_engine, max_batch=4, max_wait_s=0.2)
    good = batcher.submit("你好。", SynthesisConfig())
    bad = batcher.submit("😀", SynthesisConfig())
    assert good.result(timeout=60).duration_s > 0.2
    with pytest.raises(ValueError):
        bad.result(timeout=60)


def test_the_voice_travels_through_the_batch_path(torch_engine):
    batcher = Batcher(torch_engine, max_batch=4, max_wait_s=0.05)
    assert batcher.submit("你好。", SynthesisConfig(voice="baker")).result(timeout=60).duration_s > 0.2
    # A voice the engine lacks reaches the engine (it is not dropped on the way) and is refused.
    with pytest.raises(UnknownVoice, match="unknown voice 'nobody'"):
        batcher.submit("你好。", SynthesisConfig(voice="nobody")).result(timeout=60)


def test_a_job_with_a_voice_the_engine_lacks_fails_with_that_reason_through_the_batcher(torch_engine, settings,
                                                                                       tmp_path):
    batcher = Batcher(torch_engine, max_batch=4, max_wait_s=0.05)
    segments = plan.segments("你好。再见。", settings)
    with pytest.raises(synthesizer.SynthesisError) as err:
        Pipeline(torch_engine, settings, batcher).render(segments, SynthesisOptions(voice="nobody"), tmp_path / "x.wav")
    assert err.value.code == "unknown_voice"
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.slow
def test_gpu_pool_takes_interactive_jobs_and_batches_across_them(client, redis_url, data_dir, tmp_path):
    # A "GPU pool" worker (the torch engine on this CPU) consuming only the GPU queues: interactive
    # jobs can finish only if the API routed them there because the pool is alive.
    worker = Worker(redis_url, data_dir, tmp_path / "torch.log", queues="gpu-interactive,gpu-batch",
                    pool="threads", concurrency=4,
                    loglevel="DEBUG", VOXQ_ENGINE="fastspeech2-torch", VOXQ_BATCH_WAIT_MS=200)
    try:
        worker.wait_ready(timeout=120)
        ids = [client.post("/v1/jobs", json={"text": f"第{i}位客人，{SENTENCES[i]}"}).get_json()["id"]
               for i in range(4)]
        jobs = [wait_for(client, job_id, timeout=120) for job_id in ids]
        assert [j["status"] for j in jobs] == ["succeeded"] * 4, jobs
        log = (tmp_path / "torch.log").read_text()
        sizes = [int(line.split("batch of ")[1].split()[0]) for line in log.splitlines() if "batch of " in line]
        assert max(sizes) > 1, sizes
        # Batch-priority work goes to the pool's gpu-batch queue while the pool is alive: this
        # worker consumes no CPU queue, so the job can finish only if it was routed there.
        batch_job = client.post("/v1/jobs", json={"text": "批量任务。", "priority": "batch"}).get_json()
        assert wait_for(client, batch_job["id"], timeout=120)["status"] == "succeeded"
    finally:
        worker.stop()
