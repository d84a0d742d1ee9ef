"""`servegen publish`: commit the rendered output to the deploy branch (and push it)."""

from __future__ import annotations

from generator.errors import EXIT_OK
from generator.options import PublishOptions
from generator.publish import describe, publish


def run(options: PublishOptions) -> int:
    outcome = publish(options)
    print(f"servegen: {describe(outcome)}")
    return EXIT_OK
