"""The deploy tip's tree listing, kept in the build cache under the tip's commit id.

A fresh `publish` builds its commit on the deploy tip. Listing that tip with git
(`ls-tree -r`, about 12,000 entries at 1,000 specs) and parsing it was a fifth of the
deploy commit. The commit before was made by servegen itself, which knows its listing:
it is kept here, keyed by the commit id, and the next process reads it back instead.

Trust: a commit id names its tree for good, so a listing kept for that id is the
listing of that commit in any repository holding it. The tip is always read from the
branch first; only a listing kept under exactly that id is used, so a tip someone else
moved, rewrote or pushed is listed with git. An entry holds its key, the commit id
and a digest of its listing; any mismatch or damage is a miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import json

from generator import buildcache, git

# Bump when a record's shape changes.
FORMAT = "1"


def _key(repo: git.Repo, commit: str) -> str:
    text = f"deploy listing\0{FORMAT}\0{repo.object_format}\0{commit}"
    return hashlib.sha256(text.encode()).hexdigest()


def read_tree(repo: git.Repo, commit: str) -> git.Tree:
    """The listing of `commit`: made in this process, else kept, else from git."""
    made = git.made_listing(repo, commit)
    if made is not None:
        return made
    kept = load(repo, commit)
    return kept if kept is not None else git.read_tree(repo, commit)


def load(repo: git.Repo, commit: str) -> git.Tree | None:
    """The listing kept for `commit`, or None (none kept, damaged, not for this id)."""
    if not buildcache.enabled():
        return None
    key = _key(repo, commit)
    try:
        head, _, record = buildcache.read_entry(key).partition(b"\n")
        found = json.loads(head)
        if found.get("key") != key or found.get("digest") != hashlib.sha256(record).hexdigest():
            return None
    except (OSError, ValueError, AttributeError):
        return None
    return git.listing_from_record(repo, commit, record)


def store(repo: git.Repo, commit: str) -> None:
    """Keep the listing of `commit`, a commit `build_commit` just made in this process,
    and drop its parent's: the branch has moved on, and a listing is about as large as
    the output's paths (a megabyte at 1,000 specs), one per publish otherwise."""
    made = git.made_listing(repo, commit)
    record = git.listing_record(made) if made is not None else None
    if made is None or record is None or not buildcache.enabled():
        return
    key = _key(repo, commit)
    head = json.dumps({"key": key, "digest": hashlib.sha256(record).hexdigest()}).encode()
    buildcache.write_entry(key, [head + b"\n", record])
    for parent in made.parents:  # a reader that has it open still reads it whole
        with contextlib.suppress(OSError):
            buildcache.entry_path(_key(repo, parent)).unlink(missing_ok=True)
