"""A lease's usage samples on a real daemon (sampled every second here): ``vm.metrics()`` gives
typed samples with the guest's and the host's parts, ``since_unix_ms`` pages, an exec result
says whether the guest's OOM killer killed it; sync and async."""

from __future__ import annotations

import asyncio
import time

import pytest

import firepit


def wait_samples(vm: firepit.Lease, count: int) -> list[firepit.UsageSample]:
    deadline = time.monotonic() + 30
    while True:
        samples = vm.metrics()
        if len(samples) >= count:
            return samples
        assert time.monotonic() < deadline, samples
        time.sleep(0.2)


def test_metrics_are_typed_samples_of_the_guest_and_its_host(client: firepit.Client) -> None:
    with client.lease("default", wait=60) as vm:
        samples = wait_samples(vm, 2)
        last = samples[-1]
        assert isinstance(last, firepit.UsageSample)
        assert last.memory_total_bytes and last.memory_used_bytes
        assert 0 < last.memory_used_bytes <= last.memory_total_bytes
        assert last.host_rss_bytes and last.host_rss_bytes > 0
        assert last.cpu_percent is not None and last.cpu_percent >= 0
        assert last.cpus >= 1 and last.oom_kills == 0
        assert [s.at_unix_ms for s in samples] == sorted(s.at_unix_ms for s in samples)
        newer = vm.metrics(since_unix_ms=samples[0].at_unix_ms)
        assert all(s.at_unix_ms > samples[0].at_unix_ms for s in newer)
        assert len(newer) >= len(samples) - 1
        assert not vm.exec(["true"]).oom_killed


@pytest.mark.anyio
async def test_async_metrics(aclient: firepit.AsyncClient) -> None:
    async with aclient.lease("default", wait=60) as vm:
        deadline = time.monotonic() + 30
        while not (samples := await vm.metrics()):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        assert samples[-1].memory_total_bytes
