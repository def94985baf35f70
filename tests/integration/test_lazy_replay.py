"""Record and replay (issue 6): a build on a lazily read base records which files its steps
read (CACHE/replay); the next build of the same Dockerfile prefetches them in the background
as soon as FROM resolves, even when its step misses the step cache, so that the step itself
fetches nothing.

The base is test_lazy.py's (Debian minbase plus 30 MiB of random files) in eStargz, made by
`ossb convert`.  Between builds the chunk cache is emptied (the records stay), as when it was
pruned or the base image changed: without replay the step would fetch its files itself.

Deterministic, not timing-based: the replay claims its chunks before FROM returns, so the
RUN step's reads wait for the replay's fetches instead of fetching; the assertions read the
JSON events (the replay's totals at the end, the step's own fetched bytes), the chunk cache
and the record files."""
import json
import os
import re
import shutil
import subprocess

import pytest

import images
from conftest import open_fuse_device
from debian_base import DEBIAN_CONFIG, rootfs_entries
from debian_base import debian_rootfs_tar  # noqa: F401 (a fixture)
from test_lazy import random_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the test images need debootstrap (root)")

READS = "/opt/data/r03.bin /opt/data/r05.bin /etc/os-release"
FETCHED_RE = re.compile(r"fetched (\d+) bytes of lazily read base layers")


@pytest.fixture(scope="module")
def replay_base(debian_rootfs_tar, seeded_registry, ossb_binary, tmp_path_factory):  # noqa: F811
    reg = seeded_registry.registry
    tmp = tmp_path_factory.mktemp("replay-base")
    src, dst = tmp / "plain", tmp / "estargz"
    img = images.make_image([rootfs_entries(debian_rootfs_tar), random_layer()], config=DEBIAN_CONFIG)
    images.write_layout(src, {"base": img})
    subprocess.run([str(ossb_binary), "convert", f"oci:{src}:base", f"oci:{dst}:base", "--compression", "estargz"],
                   check=True, capture_output=True)
    reg.push_layout(dst, "base", "replay-estargz:1")
    return reg.ref("replay-estargz:1")


def events(stderr):
    out = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


class Run:
    """One build's JSON events, digested."""

    def __init__(self, r):
        self.r = r
        self.ev = events(r.stderr)
        self.starts = [e for e in self.ev if e.get("status") == "replay" and e.get("phase") == "start"]
        self.dones = [e for e in self.ev if e.get("status") == "replay" and e.get("phase") == "done"]
        self.lazy = [e for e in self.ev if e.get("status") == "lazy"]
        runs = [e for e in self.ev if e.get("status") == "started" and str(e.get("name", "")).startswith("RUN")]
        assert len(runs) == 1, r.stderr
        self.run_id = runs[0]["id"]
        self.run_index = self.ev.index(runs[0])

    def step_output(self):
        """What the RUN step printed."""
        return "\n".join(e.get("msg", "") for e in self.ev if e.get("id") == self.run_id and e.get("status") == "log"
                         and not FETCHED_RE.search(e.get("msg", "")))

    def step_fetched(self):
        """The bytes the RUN step fetched itself (its reads, not prefetch or replay)."""
        n = 0
        for e in self.ev:
            if e.get("id") == self.run_id and e.get("status") == "log":
                m = FETCHED_RE.search(e.get("msg", ""))
                if m:
                    n += int(m.group(1))
        return n


def build(ossb, context, base, run_line, *args):
    """Build in the same context dir each time (the Dockerfile's record is keyed by its path),
    with no output: the step's log says what it read."""
    open_fuse_device()
    ctx = context({"a.txt": b"a\n"}, df=f"FROM {base}\n{run_line}\n", name="replay-ctx")
    r = ossb.build(ctx, "--snapshotter", "fuse", "--progress=json", *args, out=False)
    assert r.returncode == 0, str(r)
    return Run(r)


def drop_chunks(ossb):
    shutil.rmtree(ossb.cache / "chunks", ignore_errors=True)


def chunk_count(ossb):
    d = ossb.cache / "chunks" / "sha256"
    return len([p for p in d.iterdir() if not p.name.startswith("tmp-")]) if d.is_dir() else 0


def records(ossb):
    d = ossb.cache / "replay"
    return sorted(p for p in d.iterdir() if re.fullmatch(r"[0-9a-f]{64}", p.name)) if d.is_dir() else []


def test_replay_prefetches_what_the_last_build_read(ossb, context, replay_base):
    # build 1, empty cache dir: nothing to replay; the step fetches its files and is recorded
    b1 = build(ossb, context, replay_base, f"RUN cat {READS} | sha256sum")
    assert not b1.starts and not b1.dones, b1.r.stderr
    own1 = b1.step_fetched()
    assert own1 > 6 << 20, b1.r.stderr  # r03 + r05 are 3 MiB of random bytes each
    recs = records(ossb)
    assert len(recs) == 2, recs  # this Dockerfile's, and the base image's
    text = recs[0].read_text()
    assert text.startswith("ossb-replay 1\n") and "path opt/data/r03.bin\n" in text and "path etc/os-release\n" in text
    assert "path opt/data/r07.bin\n" not in text  # only what was read

    # build 2: chunk cache emptied, the RUN line changed (a step cache miss): the replay starts
    # before the step, and the step fetches nothing itself
    drop_chunks(ossb)
    b2 = build(ossb, context, replay_base, f"RUN cat {READS} | sha256sum && true")
    assert len(b2.starts) == 1, b2.r.stderr
    start = b2.starts[0]
    assert b2.ev.index(start) < b2.run_index, "the replay must start when FROM resolves, before the step"
    assert start["record"] == "of this Dockerfile"
    assert start["files"] >= 3 and start["bytes"] > 6 << 20, start
    assert b2.step_fetched() == 0, b2.r.stderr
    assert b2.dones, b2.r.stderr
    chunks = sum(e["chunks"] for e in b2.dones)
    fetched = sum(e["fetched_chunks"] for e in b2.dones)
    assert fetched == chunks and not any(e["failed"] or e["stopped"] for e in b2.dones), b2.dones
    assert sum(e["fetched_bytes"] for e in b2.dones) > 6 << 20
    assert all(e["prefetched_bytes"] >= e["fetched_bytes"] for e in b2.dones)
    assert chunk_count(ossb) >= fetched  # the replayed chunks are in the chunk cache
    assert re.search(r"[0-9a-f]{64}", b1.step_output()), b1.r.stderr
    assert b2.step_output() == b1.step_output()  # the same bytes, from the replayed chunks

    # build 3: the same with --lazy-replay=off: no replay, the step fetches its files again
    drop_chunks(ossb)
    b3 = build(ossb, context, replay_base, f"RUN cat {READS} | sha256sum && true && true", "--lazy-replay=off")
    assert not b3.starts and not b3.dones, b3.r.stderr
    assert b3.step_fetched() > 6 << 20, b3.r.stderr
    assert b3.step_output() == b1.step_output()

    # build 4: --no-cache uses no record either (but writes one)
    drop_chunks(ossb)
    b4 = build(ossb, context, replay_base, f"RUN cat {READS} | sha256sum && true", "--no-cache")
    assert not b4.starts, b4.r.stderr
    assert b4.step_fetched() > 6 << 20, b4.r.stderr


def test_replay_plain_progress_and_base_fallback(ossb, context, replay_base):
    # build 1 records; build 2 uses another Dockerfile on the same base: the base's record
    b1 = build(ossb, context, replay_base, f"RUN cat {READS} > /out")
    assert not b1.starts
    drop_chunks(ossb)
    open_fuse_device()
    ctx = context({"b.txt": b"b\n"}, df=f"FROM {replay_base}\nRUN cat {READS} > /other\n", name="other-ctx")
    r = ossb.build(ctx, "--snapshotter", "fuse", "--progress=plain", out=False)
    assert r.returncode == 0, str(r)
    m = re.search(r"^replay: prefetching (\d+) files \((\d+) bytes, \d+ compressed\) recorded by an earlier build "
                  r"on this base image: ", r.stderr, re.M)
    assert m, r.stderr
    run_line = re.search(r"^#\d+ \[.*\] RUN ", r.stderr, re.M)
    assert run_line and m.start() < run_line.start(), r.stderr
    assert not FETCHED_RE.search(r.stderr), r.stderr  # the step fetched nothing itself
    assert re.search(r"^replay: .*: \d+ files, (\d+) chunks: \1 fetched", r.stderr, re.M), r.stderr


def test_damaged_records_are_ignored(ossb, context, replay_base):
    build(ossb, context, replay_base, f"RUN cat {READS} > /out")
    recs = records(ossb)
    assert len(recs) == 2
    recs[0].write_bytes(b"ossb-replay 1\nkey nonsense\n\x00\xff")
    recs[1].write_text(recs[1].read_text().replace("path etc/os-release", "path ../../etc/shadow"))
    drop_chunks(ossb)
    b2 = build(ossb, context, replay_base, f"RUN cat {READS} > /out && true")
    assert not b2.starts, b2.r.stderr  # neither record is used
    assert b2.r.stderr.count("ignoring a replay record") == 2, b2.r.stderr
    assert b2.step_fetched() > 6 << 20
    # and the build wrote valid ones again
    b3_recs = records(ossb)
    assert all(p.read_text().startswith("ossb-replay 1\n") for p in b3_recs)
