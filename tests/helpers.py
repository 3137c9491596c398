"""Small helpers shared by several test files."""


def without_time(record):
    """A run record less its wall-clock fields (any key containing "seconds"), which
    differ between otherwise identical runs."""
    if not isinstance(record, dict):
        return record
    return {k: without_time(v) for k, v in record.items() if "seconds" not in k}


def assert_valid_results(path) -> dict:
    """Load a command's ``results.json`` and validate it against the package's schema."""
    import importlib.resources
    import json

    import jsonschema

    schema = json.loads(importlib.resources.files("dnc_jax").joinpath(
        "schemas/results.schema.json").read_text())
    with open(path) as fh:
        results = json.load(fh)
    jsonschema.validate(results, schema, cls=jsonschema.Draft202012Validator)
    return results
