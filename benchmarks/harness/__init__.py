"""What the suites share: datasets, scales, targets, samplers, measured runs and their records.

Always the working tree's code (asv never installs it); it reaches the pipeline under test only through
its command line and run.json. Importing any module here must not import torch or touch CUDA.
"""
