"""Protocol stage: pure derivations from facts to protocol records.

``derive.derive_subject`` is the entry point; ``rules.load_rules`` reads the
thresholds it applies.  Nothing here does I/O except reading the rules files.
"""
