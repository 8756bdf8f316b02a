"""Issue 15's "nothing is allocated on the hot path", checked without a GPU: the library's CUDA host
path on the null driver (scripts/nullcuda.c: every driver entry point succeeds, no kernel runs),
BatchDecodeWithPagedKVCacheWrapper.run's per-layer call through the C ABI in a 32-layer loop (both
decode paths: use_tensor_cores=False and True), the batch prefill wrapper's run() and the cascade
wrapper's run() (2 levels: two attention launches and a merge per call)
(python/tests/host_path_decode.py), heap allocations counted by scripts/malloccount.c under
LD_PRELOAD. Needs a C compiler and NVRTC (FLASHINFER_CUDA_PIP, as .ci/run sets it: the run JIT-compiles
its kernel for real); skipped otherwise. The µs per run() it prints are host work on this machine,
not asserted."""
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _build(tmp_path, source, name):
    out = str(tmp_path / name)
    subprocess.run([shutil.which("cc"), "-O2", "-shared", "-fPIC", "-o", out, os.path.join(ROOT, "scripts", source)], check=True)
    return out


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (cc) for the null driver")
@pytest.mark.skipif(not os.environ.get("FLASHINFER_CUDA_PIP"), reason="needs NVRTC (FLASHINFER_CUDA_PIP, as .ci/run sets)")
def test_decode_run_allocates_nothing_on_the_host_path(tmp_path):
    driver = _build(tmp_path, "nullcuda.c", "libcuda.so.1")
    counter = _build(tmp_path, "malloccount.c", "libmalloccount.so")
    env = dict(os.environ, FLASHINFER_CUDA_DRIVER=driver, LD_PRELOAD=counter)
    r = subprocess.run([sys.executable, os.path.join(HERE, "host_path_decode.py"), "10"], env=env, capture_output=True,
                       text=True, timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [l for l in r.stdout.splitlines() if l.startswith("host-path:")]
    print("\n".join(lines))
    # both decode paths at batch 1 and 64, the batch prefill run, the cascade run
    assert len(lines) == 6, r.stdout + r.stderr
    for line in lines:
        allocations = float(line.split(",")[-1].split()[0])
        assert allocations == 0, f"heap allocations on run()'s hot path: {line}"


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (cc) for the null driver")
@pytest.mark.skipif(not os.environ.get("FLASHINFER_CUDA_PIP"), reason="needs NVRTC (FLASHINFER_CUDA_PIP, as .ci/run sets)")
def test_device_index_tensors_are_handed_to_the_kernel(tmp_path):
    """RoPE and the paged-KV append with CUDA index tensors (python/tests/host_path_indices.py on the
    null driver): one launch, no host copy, no synchronization (so the call can be captured in a
    CUDA graph), the tensors' addresses and the kernel's bounds in the launched parameters; host
    index tensors validated and uploaded; bad placements and dtypes refused."""
    driver = _build(tmp_path, "nullcuda.c", "libcuda.so.1")
    env = dict(os.environ, FLASHINFER_CUDA_DRIVER=driver)
    r = subprocess.run([sys.executable, os.path.join(HERE, "host_path_indices.py")], env=env, capture_output=True, text=True,
                       timeout=1200)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "host-path-indices: 18 cases passed" in r.stdout, r.stdout + r.stderr
