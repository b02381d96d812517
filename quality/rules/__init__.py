"""Labeling rules: owners' keyword lists, patterns and field conditions that propose labels.

`kinds` checks a rule's settings and matches items, `safety` keeps owner patterns from hanging a
worker, `running` runs the active rules over a project (stats and pre-labels), `services` writes
rules and queues runs.
"""
