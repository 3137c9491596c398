"""The mutation runner's record of equivalent mutants stays true to the code.

A key names the function and the mutated source (``mutation_score.Mutant``): when code with
a recorded equivalent moves or changes, its key names no mutant any more and the mutant
counts as alive again, silently (15 of 57 keys went stale in the moves of issue 23).
"""

import json

import mutation_score
import pytest


@pytest.mark.slow  # parses the twelve core modules' mutants: 3-5 s
def test_every_recorded_equivalent_names_a_current_mutant_with_a_reason():
    keys = {m.key for paths in mutation_score.MODULES.values() for path in paths
            for m in mutation_score.mutants(path)}
    recorded = json.loads(mutation_score.EQUIVALENT.read_text())
    stale = [e["key"] for e in recorded if e["key"] not in keys]
    assert not stale, ("re-key these equivalents (python tests/mutation_score.py "
                       f"--list-survivors names the current keys) or drop them: {stale}")
    assert len({e["key"] for e in recorded}) == len(recorded)
    assert all(e["reason"].strip() for e in recorded)
