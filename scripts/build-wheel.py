#!/usr/bin/env python3
"""Builds the Python wheel: the `flashinfer_swift` package (python/flashinfer_swift) with
`libflashinfer_swift.so` next to it, which the package finds there (python/flashinfer_swift/__init__.py).

    python3 scripts/build-wheel.py                 # swift build -c release --product flashinfer_swift
                                                   #   -Xswiftc -static-stdlib, then dist/*.whl
    python3 scripts/build-wheel.py --lib PATH.so   # bundle an already built library (no build)
    python3 scripts/build-wheel.py --out DIR

Install it where there is no network: `pip install --no-deps dist/flashinfer_swift-*.whl` (the
package needs numpy; torch for CUDA tensors). The library is plain C ABI over ctypes (no CPython
extension), so the wheel is `py3-none-<platform>`; the platform tag is the manylinux level of the
newest glibc symbol the library imports (the Swift runtime is linked in statically; libstdc++,
libm and libc are the system's). No `wheel`/`setuptools` needed: a wheel is a zip with a
dist-info directory, written here with its RECORD hashes.
"""
import argparse
import base64
import hashlib
import os
import re
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def version():
    """PEP 440 form of FlashInferVersion.string ("0.1.0-dev" -> "0.1.0.dev0")."""
    src = open(os.path.join(ROOT, "Sources", "FlashInfer", "Version.swift")).read()
    v = re.search(r'string = "([^"]+)"', src).group(1)
    return v.replace("-dev", ".dev0")


def glibc_tag(lib):
    """manylinux_2_N_x86_64 for the newest GLIBC_2.N the library imports (objdump -T)."""
    try:
        out = subprocess.run(["objdump", "-T", lib], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "linux_x86_64"
    minors = [int(m) for m in re.findall(r"GLIBC_2\.(\d+)", out)]
    return f"manylinux_2_{max(minors)}_x86_64" if minors else "linux_x86_64"


def record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", help="an already built libflashinfer_swift.so (default: build the release library)")
    ap.add_argument("--out", default=os.path.join(ROOT, "dist"), help="output directory (default: dist/)")
    args = ap.parse_args()
    lib = args.lib
    if lib is None:
        subprocess.run(["swift", "build", "-c", "release", "--product", "flashinfer_swift", "-Xswiftc", "-static-stdlib"],
                       cwd=ROOT, check=True)
        lib = os.path.join(ROOT, ".build", "release", "libflashinfer_swift.so")
    if not os.path.isfile(lib):
        sys.exit(f"build-wheel: {lib} not found")
    ver, plat = version(), glibc_tag(lib)
    name = "flashinfer_swift"
    dist_info = f"{name}-{ver}.dist-info"
    files = []  # (archive name, bytes)
    pkg = os.path.join(ROOT, "python", name)
    for f in sorted(os.listdir(pkg)):
        if f.endswith(".py"):
            files.append((f"{name}/{f}", open(os.path.join(pkg, f), "rb").read()))
    files.append((f"{name}/libflashinfer_swift.so", open(lib, "rb").read()))
    metadata = "\n".join([
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {ver}",
        "Summary: FlashInfer's attention, sampling and serving ops in Swift, with upstream's Python API (C ABI over DLPack, ctypes)",
        "Requires-Python: >=3.9",
        "Requires-Dist: numpy",
        "",
    ]).encode()
    wheel_meta = "\n".join(["Wheel-Version: 1.0", "Generator: swift-flashinfer scripts/build-wheel.py",
                            "Root-Is-Purelib: false", f"Tag: py3-none-{plat}", ""]).encode()
    files += [(f"{dist_info}/METADATA", metadata), (f"{dist_info}/WHEEL", wheel_meta)]
    record = "\n".join([record_line(n, d) for n, d in files] + [f"{dist_info}/RECORD,,", ""]).encode()
    files.append((f"{dist_info}/RECORD", record))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{name}-{ver}-py3-none-{plat}.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in files:
            info = zipfile.ZipInfo(n, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if n.endswith(".so") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, d)
    print(path)


if __name__ == "__main__":
    main()
