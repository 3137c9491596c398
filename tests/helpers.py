"""Small helpers shared by several test files."""


def without_time(record):
    """A run record less its wall-clock fields (any key containing "seconds"), which
    differ between otherwise identical runs."""
    if not isinstance(record, dict):
        return record
    return {k: without_time(v) for k, v in record.items() if "seconds" not in k}
