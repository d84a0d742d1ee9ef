"""`servegen promote`: copy the model version of one environment to another (spec edits)."""

from __future__ import annotations

import sys

from generator.errors import EXIT_OK, UsageError
from generator.options import PromoteOptions
from generator.promote import PromoteRequest, apply, plan


def run(options: PromoteOptions) -> int:
    if options.all and options.names:
        raise UsageError("promote: give model names or --all, not both")
    if not options.all and not options.names:
        raise UsageError("promote: name the models to promote, or pass --all")
    request = PromoteRequest(
        source=options.source,
        target=options.target,
        names=options.names,
        all=options.all,
        serve=options.serve,
        require_live=options.require_live,
    )
    planned = plan(options.common.root, request)
    for edit in planned.edits:
        sys.stdout.write(edit.diff)
    for name in planned.current:
        print(f"servegen: {name} already runs {planned.source}'s version in {planned.target}")
    if planned.live:
        print(f"servegen: {planned.live}")
    if not planned.promotions:
        print("servegen: nothing to promote")
        return EXIT_OK
    for promotion in planned.promotions:
        print(f"servegen: {promotion.line(planned.target)}")
    if options.dry_run:
        print("servegen: dry run: nothing written")
        return EXIT_OK
    done = apply(planned, options.common.root, commit=options.commit)
    count = len(done.promotions)
    print(f"servegen: promoted {count} model(s) from {done.source} to {done.target}")
    if done.commit:
        print(f"servegen: committed {done.commit[:12]}: {done.message().splitlines()[0]}")
    return EXIT_OK
