"""What the fuzzers share: their Hypothesis settings."""

from __future__ import annotations

from hypothesis import HealthCheck, settings


def fuzzed(examples: int) -> settings:
    """A fuzzer's settings: `examples` drawn inputs, no deadline (a validate or publish
    takes what it takes), and one fixture for them all (a repository is not made per
    example, so function-scoped fixtures are meant)."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
