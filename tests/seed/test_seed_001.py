"""Seed 001's pytest suite (unit, integration and stress tests), run against batchpilot.

The tests are the seed's own; only the imports changed (``modules.engine.batch_processor``
and ``modules.configs`` are ``batchpilot.online`` here). One change resolves an
inconsistency inside the seed: ``test_error_handling`` needs each request's first axis
to be rows (``len(batch) > 2`` must see the 4 rows of one request), while
``test_ml_pipeline_integration`` needs requests stacked along a new axis. The default
``collate="stack"`` serves the integration test, and ``test_error_handling`` gets its
own processor configured with ``collate="concat"``. No assertion was changed.
"""

import dataclasses

import numpy as np
import pytest

from batchpilot.online import (
    BatchPriority,
    BatchProcessingStrategy,
    BatchProcessor,
    BatchProcessorConfig,
)


class TestBatchProcessor:
    @pytest.fixture
    def basic_config(self):
        return BatchProcessorConfig(
            initial_batch_size=4, max_batch_size=16, batch_timeout=0.1, enable_monitoring=True
        )

    @pytest.fixture
    def processor(self, basic_config):
        processor = BatchProcessor(basic_config)
        yield processor
        processor.stop()

    def test_basic_processing(self, processor):
        """Test basic batch processing functionality"""

        def double_func(batch):
            return batch * 2

        processor.start(double_func)

        # Submit test data
        test_data = np.array([1, 2, 3])
        future = processor.enqueue_predict(test_data)
        result = future.result()

        np.testing.assert_array_equal(result, np.array([2, 4, 6]))

    def test_priority_processing(self):
        """Test priority-based processing"""
        config = BatchProcessorConfig(
            initial_batch_size=2, max_batch_size=4, enable_priority_queue=True
        )

        processor = BatchProcessor(config)
        processor.start(lambda x: x)

        try:
            # Submit normal and high priority items
            normal_future = processor.enqueue_predict(np.array([1]), priority=BatchPriority.NORMAL)
            high_future = processor.enqueue_predict(np.array([2]), priority=BatchPriority.HIGH)

            # High priority should be processed first
            # (timing dependent, but generally true)
            high_result = high_future.result()
            normal_result = normal_future.result()

            assert high_result[0] == 2
            assert normal_result[0] == 1
        finally:
            processor.stop()

    def test_adaptive_batching(self):
        """Test adaptive batch size adjustment"""
        config = BatchProcessorConfig(
            initial_batch_size=4,
            max_batch_size=16,
            enable_adaptive_batching=True,
            processing_strategy=BatchProcessingStrategy.ADAPTIVE,
        )

        processor = BatchProcessor(config)

        # Slow processing function to trigger adaptation
        def slow_func(batch):
            import time

            time.sleep(0.1)  # Simulate slow processing
            return batch

        processor.start(slow_func)

        try:
            initial_size = processor._current_batch_size  # noqa: F841 (seed code)

            # Submit several batches to trigger adaptation
            futures = []
            for _ in range(10):
                future = processor.enqueue_predict(np.array([1]))
                futures.append(future)

            # Wait for processing
            for future in futures:
                future.result()

            # Batch size should adapt (likely decrease due to slow processing)
            # This is a timing-dependent test, so we just check it's reasonable
            final_size = processor._current_batch_size
            assert 1 <= final_size <= 16
        finally:
            processor.stop()

    @pytest.fixture
    def concat_processor(self, basic_config):
        processor = BatchProcessor(dataclasses.replace(basic_config, collate="concat"))
        yield processor
        processor.stop()

    def test_error_handling(self, concat_processor):
        """Test error handling and recovery

        batchpilot: this test runs with ``collate="concat"`` (each request's first axis is
        rows), so the 4-element request is a batch of 4 rows; see the module docstring.
        With the seed's default retries (3, from retry_delay=1.0 doubling) the failing
        request takes about 7 s before it gets its ValueError.
        """
        processor = concat_processor

        def error_func(batch):
            if len(batch) > 2:
                raise ValueError("Batch too large")
            return batch

        processor.start(error_func)

        # Small batch should work
        small_future = processor.enqueue_predict(np.array([1]))
        result = small_future.result()
        assert result[0] == 1

        # Large batch should fail
        large_future = processor.enqueue_predict(np.array([1, 2, 3, 4]))
        with pytest.raises(ValueError):
            large_future.result()

    def test_statistics_collection(self, processor):
        """Test statistics and monitoring"""
        processor.start(lambda x: x)

        # Process some items
        futures = []
        for i in range(5):
            future = processor.enqueue_predict(np.array([i]))
            futures.append(future)

        # Wait for completion
        for future in futures:
            future.result()

        # Check statistics
        stats = processor.get_stats()
        assert "avg_processing_time" in stats
        assert "throughput" in stats
        assert "current_batch_size" in stats
        assert stats["throughput"] > 0

    @pytest.mark.asyncio
    async def test_concurrent_processing(self, processor):
        """Test concurrent request handling"""
        import asyncio

        processor.start(lambda x: x * 2)

        async def submit_request(value):
            future = processor.enqueue_predict(np.array([value]))
            return await asyncio.wrap_future(future)

        # Submit concurrent requests
        tasks = [submit_request(i) for i in range(10)]
        results = await asyncio.gather(*tasks)

        # Verify all results
        for i, result in enumerate(results):
            assert result[0] == i * 2


# Run tests with: pytest test_batch_processor.py -v


def test_ml_pipeline_integration():
    """Integration test simulating ML pipeline"""

    # Mock ML model
    class MockMLModel:
        def predict(self, X):
            # Simulate model inference
            return X.sum(axis=1, keepdims=True)

    model = MockMLModel()

    # Configure processor for ML workload
    config = BatchProcessorConfig(
        initial_batch_size=32,
        max_batch_size=128,
        enable_adaptive_batching=True,
        enable_monitoring=True,
        max_batch_memory_mb=256,
    )

    processor = BatchProcessor(config)
    processor.start(model.predict)

    try:
        # Simulate real ML inference requests
        test_data = [np.random.rand(10) for _ in range(100)]

        futures = []
        for data in test_data:
            future = processor.enqueue_predict(data)
            futures.append(future)

        # Collect results
        results = [future.result() for future in futures]

        # Verify results
        assert len(results) == 100
        for i, result in enumerate(results):
            expected = test_data[i].sum()
            assert abs(result[0] - expected) < 1e-6

        # Check performance metrics
        stats = processor.get_stats()
        assert stats["throughput"] > 0
        assert stats["error_rate"] == 0

    finally:
        processor.stop()


def test_load_and_stress():
    """Stress test under high load"""
    config = BatchProcessorConfig(
        initial_batch_size=16, max_batch_size=64, enable_adaptive_batching=True
    )

    processor = BatchProcessor(config)
    processor.start(lambda x: x)

    try:
        # High load test
        futures = []
        for _ in range(1000):
            data = np.random.rand(5)
            future = processor.enqueue_predict(data)
            futures.append(future)

        # Wait for all to complete
        for future in futures:
            future.result()

        stats = processor.get_stats()
        print(f"Processed 1000 requests with throughput: {stats['throughput']:.2f}/s")

    finally:
        processor.stop()
