"""The demo site's build step: needs only Python.

Copies the site into dist/ and stamps the commit being built (EDGE_COMMIT, set by
edgeproxy's build runner) where a page says <!-- edge:commit -->. Run by `git push` to the
gateway; the source directory itself stays publishable as is (the marker is a comment).
"""

import os
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
DIST = HERE / "dist"
MARKER = "<!-- edge:commit -->"


def main() -> None:
    shutil.rmtree(DIST, ignore_errors=True)
    shutil.copytree(HERE, DIST, ignore=shutil.ignore_patterns("dist", "build.py", ".*"))
    commit = os.environ.get("EDGE_COMMIT", "")[:10] or "a local build"
    branch = os.environ.get("EDGE_BRANCH", "")
    stamp = f'<p class="build">Built from {commit}' + (f" on {branch}" if branch else "") + "</p>"
    pages = 0
    for page in DIST.rglob("*.html"):
        text = page.read_text()
        if MARKER in text:
            page.write_text(text.replace(MARKER, stamp))
            pages += 1
    print(f"built {sum(1 for p in DIST.rglob('*') if p.is_file())} files into dist/, "
          f"stamped {pages} page(s) with {commit}")


if __name__ == "__main__":
    main()
