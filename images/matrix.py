"""The gpuhub/pytorch-cuda image matrix (images/matrix.toml), for images/build.sh and the docs.

    python3 images/matrix.py tags            every tag, one per line
    python3 images/matrix.py row TAG         shell assignments for images/build.sh (torch, cuda, base)
    python3 images/matrix.py default         the default tag (docker-compose.yml and the Dockerfile use it)
    python3 images/matrix.py table           the Markdown table in images/README.md
"""

from __future__ import annotations

import shlex
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "platform"))

from gpuhub.singleuser.envcheck import MIN_DRIVER  # noqa: E402  (the env check's own table)

FIELDS = ("tag", "torch", "cuda", "base", "cudnn", "nccl", "pinned_from")


def rows(path: Path = HERE / "matrix.toml") -> list[dict]:
    with open(path, "rb") as f:
        images = tomllib.load(f)["image"]
    for image in images:
        missing = [k for k in FIELDS if k not in image]
        if missing:
            raise SystemExit(f"{path}: image {image.get('tag', '?')} lacks {', '.join(missing)}")
        expected_tag = f"{'.'.join(image['torch'].split('.')[:2])}-cuda{image['cuda']}"
        if image["tag"] != expected_tag:
            raise SystemExit(f"{path}: tag {image['tag']} should be {expected_tag} (torch major.minor-cudaX.Y)")
        if image["cuda"] not in MIN_DRIVER:
            raise SystemExit(f"{path}: CUDA {image['cuda']} of {image['tag']} is not in envcheck.MIN_DRIVER: add its driver there")
    return images


def find(tag: str) -> dict:
    for image in rows():
        if image["tag"] == tag:
            return image
    raise SystemExit(f"images/matrix.py: no image tag '{tag}'. Tags: {', '.join(r['tag'] for r in rows())}, or 'cpu'")


def default() -> dict:
    (image,) = [r for r in rows() if r.get("default")]
    return image


def table() -> str:
    lines = [
        "| tag | torch | CUDA | minimum driver (Linux) | under minor-version compatibility | cuDNN | NCCL | base image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows():
        full, compat = MIN_DRIVER[r["cuda"]]
        mark = "" if r["pinned_from"] == "pypi" else " ‡"
        default_mark = " (default)" if r.get("default") else ""
        lines.append(
            f"| `gpuhub/pytorch-cuda:{r['tag']}`{default_mark} | {r['torch']} | {r['cuda']} | {full} | {compat}"
            f" | {r['cudnn']}{mark} | {r['nccl']}{mark} | `{r['base']}` |"
        )
    lines.append(
        "| `gpuhub/pytorch-cuda:cpu` | 2.13.0 (CPU build) | none | none | none | none | none | a local Debian base (CI) |"
    )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    match argv:
        case ["tags"]:
            print("\n".join(r["tag"] for r in rows()))
        case ["row", tag]:
            r = find(tag)
            print(f"torch={shlex.quote(r['torch'])} cuda={shlex.quote(r['cuda'])} cuda_base={shlex.quote(r['base'])}")
        case ["default"]:
            print(default()["tag"])
        case ["table"]:
            print(table())
        case _:
            print(__doc__, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
