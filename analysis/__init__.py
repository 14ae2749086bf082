"""The analysis: reads RunRecords (and asv's results) and turns them into the projection and the report.

It never runs anything and never imports the pipeline: `record` (the typed Record), `costmodel` (the
fit and its projections), `projection` (per group of runs), `sections`/`advice` (the report's content),
`history` (asv's results), `markdown`/`plots` (rendering). Entry points: `python -m scripts.project`,
`python -m scripts.report`.
"""
