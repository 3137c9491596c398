"""The documentation site builds with warnings as errors; its generated pages are current;
the results.json schema is a valid schema that rejects what it should."""

import importlib.resources
import json
import pathlib
import subprocess
import sys

import jsonschema
import pytest

from dnc_jax.collapse import OFFICIAL_METRICS, CollapseMetrics

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _schema() -> dict:
    return json.loads(importlib.resources.files("dnc_jax").joinpath(
        "schemas/results.schema.json").read_text())


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path):
    """``mkdocs build --strict``: a griffe warning (a documented parameter that does not
    exist, an unparsable section), a broken link or a missing page fails the build."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1",
                                                      "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout + result.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("fit_rfm", "rfm_step", "kernel_agop", "DeepRFM", "collapse_metrics"):
        assert f'id="dnc_jax.{name}"' in api, name
    for notebook in ("tutorial", "paper_figures"):  # rendered with their outputs
        page = (tmp_path / "site" / "notebooks" / notebook / "index.html").read_text()
        assert 'class="jp-RenderedText jp-OutputArea-output' in page, notebook


def test_the_commands_page_is_generated_from_the_parser():
    sys.path.insert(0, str(ROOT / "docs" / "tools"))
    try:
        import gen_commands
    finally:
        sys.path.pop(0)
    assert (ROOT / "docs" / "commands.md").read_text() == gen_commands.render(), (
        "docs/commands.md is stale: run python docs/tools/gen_commands.py")


def test_the_results_schema_is_valid_and_strict_where_it_matters():
    schema = _schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$defs"]["metrics"]["required"] == [*CollapseMetrics._fields,
                                                      *OFFICIAL_METRICS]
    environment = {"versions": {"python": "3.11", "dnc-jax": "0.2.0", "jax": "0.10",
                                "jaxlib": "0.10", "numpy": "2"},
                   "device": {"platform": "cpu", "kind": "cpu", "count": 1}, "machine": "x"}
    step = {"step": 0, "test_mse": 1.0, "relative_error": 0.5, "subspace_distance": 0.1,
            "leading_distance": 0.1, "captured": 0.9, "random_baseline": 0.9,
            "agop_top": [1.0]}
    config = {"experiment": "multi_index", "d": 10, "r": 3, "n": 100, "n_test": 50,
              "inputs": "hypercube", "noise": 0.1, "steps": 1, "kernel": "laplace",
              "bandwidth": 1.0, "reg": 1e-3, "seed": 0, "sizes": [100]}
    good = {"config": config, "environment": environment,
            "sizes": [{"n": 100, "records": [step]}]}
    jsonschema.validate(good, schema, cls=jsonschema.Draft202012Validator)
    bad = [
        {**good, "sizes": [{"n": 100, "records": [{**step, "captured": "0.9"}]}]},
        {k: v for k, v in good.items() if k != "environment"},
        {**good, "config": {**config, "experiment": "unknown"}},
    ]
    for results in bad:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(results, schema, cls=jsonschema.Draft202012Validator)


def test_the_probes_page_examples_run():
    """docs/probes.md's code runs as written and gives what its text says."""
    import re

    text = (ROOT / "docs" / "probes.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/probes.md", "exec"), namespace)
    layers = namespace["layers"]
    assert [(p.path, p.kind) for p in layers] == [("conv1", "conv"), ("conv2", "conv"), ("head", "dense")]
    assert layers[1].agop.shape == (72, 72) and layers[0].agop.shape == (9, 9)
    assert namespace["stats"].counts.tolist() == [24.0] * 4


def test_the_conv_rfm_page_example_runs():
    import re

    text = (ROOT / "docs" / "conv-rfm.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    namespace: dict = {}
    exec(compile(block, "docs/conv-rfm.md", "exec"), namespace)
    assert [(s.layer, s.step) for s in namespace["steps"]] == [(0, 0), (0, 1)]


def test_user_documents_name_no_issue_or_outside_path():
    """README, BENCHMARKS, TESTING and the docs state results; issue numbers, accounts of
    work sessions and paths outside the repository (the history, the design notes kept
    beside it) stay out."""
    import re

    documents = [ROOT / "README.md", ROOT / "BENCHMARKS.md", ROOT / "TESTING.md",
                 *sorted((ROOT / "docs").glob("*.md"))]
    issue = re.compile(r"\b[Ii]ssues? #?\d+\b|\(#\d+\)|\b[Ss]essions?\b")  # no history
    outside = re.compile(r"\.\./[\w./-]+|\b(DESIGN|STYLE)\.md\b")
    found = []
    for path in documents:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for pattern in (issue, outside):
                match = pattern.search(line)
                if match:
                    found.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)}")
    assert not found, "\n".join(found)
