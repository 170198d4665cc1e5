"""The user's guide as the tests read it: the README, then the guide's pages in the site's order (docs/index.md's
toctree), so a command or example is found wherever it lives."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def guide_pages() -> list[Path]:
    """README.md, then docs/guide/*.md in the order the site lists them."""
    index = (ROOT / "docs" / "index.md").read_text()
    return [ROOT / "README.md", *(ROOT / "docs" / f"{name}.md" for name in re.findall(r"^(guide/[\w-]+)$", index,
                                                                                     flags=re.M))]


def guide_text() -> str:
    return "\n\n".join(p.read_text() for p in guide_pages())


def guide_commands(marker: str, **paths) -> list[list[str]]:
    """The ppvae command lines of the guide's bash block that mentions ``marker``, as argument lists, each path in
    ``paths`` (``{"runs/prodlda": tmp_path / "run"}``) replaced."""
    import shlex

    (block,) = [b for b in re.findall(r"```bash\n(.*?)```", guide_text(), flags=re.S) if marker in b]
    for old, new in paths.items():
        block = block.replace(old, str(new))
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line.split("  #")[0])[1:] for line in lines if line.startswith(".venv/bin/ppvae ")]
