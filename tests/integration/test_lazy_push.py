"""Pushing an image built on a lazily read base to ANOTHER registry (issue 6: "blobs the build
never downloaded are cross-repo mounted on the same registry, or streamed registry-to-registry,
never required locally").

The base is test_lazy.py's eStargz base on the seeded registry; the result goes to a second
registry, so no cross-repository mount is possible: the base layers the build never fetched
must be streamed from the first registry into the second, chunk by chunk, without ever being
stored whole in ossb's cache.  Checked: the pushed image is complete and valid (skopeo copies
it, every blob's digest), its base layers are byte-identical to the source's, the cache holds
no base blob afterwards, and a blob whose source bytes are corrupted is refused before the
upload completes."""
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from test_lazy import build, lazy_bases, lazy_counts  # noqa: F401 (lazy_bases is a fixture)
from debian_base import debian_rootfs_tar  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the test images need debootstrap (root)")


def blobs_in_cache(ossb):
    """{hex: path} of every blob of ossb's stores (provenance records and chunks aside)."""
    return {p.name: str(p) for p in Path(ossb.cache).rglob("*")
            if p.is_file() and len(p.name) == 64 and "blobs" in p.parts}


def manifest_of(reg, name):
    return json.loads(reg.inspect_raw(name))


def test_push_to_other_registry_streams_base_layers(ossb, context, lazy_bases, seeded_registry,  # noqa: F811
                                                    registry_factory, tmp_path):
    src = seeded_registry.registry
    dst = registry_factory(name="other")
    base = manifest_of(src, "lazy-estargz:1")
    base_layers = [d["digest"] for d in base["layers"]]
    r = build(ossb, context, lazy_bases["estargz"], "RUN cat /etc/os-release > /out\n",
              "--output", f"type=registry,name={dst.ref('pushed:1')}", out=False)
    assert r.returncode == 0, str(r)
    counts = lazy_counts(r.stderr)
    fetched, size = sum(c[1] for c in counts), sum(c[2] for c in counts)
    assert counts and fetched < size * 0.05, r.stderr
    # never stored whole: the cache holds none of the base's blobs
    held = blobs_in_cache(ossb)
    assert not [held[h] for h in (d.split(":")[1] for d in base_layers) if h in held]
    # the pushed image: its base layers are the source's, with the same bytes
    pushed = manifest_of(dst, "pushed:1")
    assert [d["digest"] for d in pushed["layers"][:len(base_layers)]] == base_layers
    for d in base_layers:
        st, _, data = dst.http("GET", f"/v2/pushed/blobs/{d}")
        assert st == 200 and "sha256:" + hashlib.sha256(data).hexdigest() == d
    # and a peer tool reads the whole image from the second registry
    out = tmp_path / "copy"
    subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{dst.ref('pushed:1')}",
                    f"oci:{out}:x"], check=True, capture_output=True)


def test_push_refuses_corrupted_source_bytes(ossb, context, lazy_bases, seeded_registry,  # noqa: F811
                                             registry_factory, fault_proxy):
    from faultproxy import Fault
    src = seeded_registry.registry
    dst = registry_factory(name="other2")
    proxy = fault_proxy(src)
    ref = lazy_bases["estargz"].replace(src.host, proxy.host)
    base = manifest_of(src, "lazy-estargz:1")
    data_layer = base["layers"][1]["digest"]
    # the build reads only /etc/os-release (layer 0); the push then streams layer 1 through
    # the proxy, which flips a byte in every answer for it after the build's first requests
    proxy.add(Fault("corrupt", method="GET", path=f"/blobs/{data_layer}", attempts=list(range(4, 400))))
    r = build(ossb, context, ref, "RUN cat /etc/os-release > /out\n",
              "--output", f"type=registry,name={dst.ref('bad:1')}", ok=False, out=False)
    assert r.returncode != 0, str(r)
    assert data_layer in r.stderr and "not pushed" in r.stderr, r.stderr
    assert not dst.has_blob("bad", data_layer)
    assert not dst.has_manifest("bad", "1")
